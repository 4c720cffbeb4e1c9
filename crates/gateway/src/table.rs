//! The route table: durable in SQLite ([`nimbus_store::RouteStore`]), served from
//! memory. Every change writes through to the store first, then swaps in a freshly
//! built [`Matcher`]; requests only ever clone an `Arc` to the current one.

use crate::matcher::Matcher;
use crate::route::{Route, RouteError, RouteKey};
use nimbus_dispatch::Dispatch;
use nimbus_store::{RouteStore, StoreError, StoredRoute};
use nimbus_telemetry::Telemetry;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The API the gateway listener serves. Function URLs and named APIs get their own
/// ids later; the store is keyed by API already.
pub const DEFAULT_API: &str = "default";

/// Why a route change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Invalid(#[from] RouteError),
    #[error("Cannot add route {route}: function {function} does not exist (deploy it first)")]
    FunctionNotFound { route: String, function: String },
    #[error("Cannot add route {route}: function {function} has no version or alias {qualifier}")]
    QualifierNotFound {
        route: String,
        function: String,
        qualifier: String,
    },
    #[error("Route not found: {0}")]
    RouteNotFound(String),
    #[error("cannot store the route: {0}")]
    Store(#[from] StoreError),
}

struct Inner {
    store: RouteStore,
    /// Runs the routes' functions: the dispatch seam, not the invoker.
    dispatch: Arc<dyn Dispatch>,
    telemetry: Telemetry,
    public_url: String,
    /// Writers take this lock for the whole change (store write, then swap), so
    /// changes apply in one order in the store and in memory.
    routes: tokio::sync::Mutex<BTreeMap<String, Arc<Route>>>,
    matcher: RwLock<Arc<Matcher>>,
    /// The API's CORS configuration.
    cors: crate::cors::ApiCors,
    /// Lambda function URLs, served on the same listener.
    function_urls: crate::function_url::FunctionUrls,
    /// Authorizers, API keys, usage plans and throttling state.
    auth: crate::auth::GatewayAuth,
}

/// Handle to the route table. Cheap to clone.
#[derive(Clone)]
pub struct RouteTable {
    inner: Arc<Inner>,
}

impl RouteTable {
    /// Load the stored routes of the database at `db_path`. Requests run their
    /// functions through `dispatch`; `telemetry` gets the gateway's metrics.
    /// `public_url` is the gateway's base URL as clients reach it
    /// (`http://127.0.0.1:8080`).
    pub fn open(
        db_path: &Path,
        dispatch: Arc<dyn Dispatch>,
        telemetry: Telemetry,
        public_url: String,
    ) -> Result<Self, StoreError> {
        let store = RouteStore::open(db_path)?;
        let mut routes = BTreeMap::new();
        for s in store.list()? {
            if s.api != DEFAULT_API {
                continue;
            }
            match serde_json::from_str::<Route>(&s.config) {
                Ok(r) => {
                    routes.insert(r.route_key.to_string(), Arc::new(r));
                }
                Err(e) => tracing::warn!(
                    route = %s.route_key,
                    error = %e,
                    "skipping a stored gateway route that no longer parses"
                ),
            }
        }
        let matcher = Matcher::new(routes.values());
        let cors = crate::cors::ApiCors::open(store.clone(), DEFAULT_API)?;
        let function_urls = crate::function_url::FunctionUrls::open(store.clone())?;
        let auth = crate::auth::GatewayAuth::open(db_path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                dispatch,
                telemetry,
                public_url: public_url.trim_end_matches('/').to_string(),
                routes: tokio::sync::Mutex::new(routes),
                matcher: RwLock::new(Arc::new(matcher)),
                cors,
                function_urls,
                auth,
            }),
        })
    }

    /// The matcher requests use now.
    pub fn matcher(&self) -> Arc<Matcher> {
        self.inner
            .matcher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The URL a client calls for a route (`None` for `$default`, which takes
    /// every path). Path variables stay as written: `http://…/users/{id}`.
    pub fn url_of(&self, route: &Route) -> Option<String> {
        route
            .route_key
            .path()
            .map(|p| format!("{}{}", self.inner.public_url, p.as_str()))
    }

    /// Every route, ordered by route key.
    pub async fn list(&self) -> Vec<Arc<Route>> {
        self.inner.routes.lock().await.values().cloned().collect()
    }

    /// Add or replace a route. The function (and qualifier) must exist. Returns the
    /// stored route and whether it is new.
    pub async fn put(&self, mut route: Route) -> Result<(Arc<Route>, bool), TableError> {
        route.validate()?;
        let key = route.route_key.to_string();
        let inv = &self.inner.dispatch;
        if inv.function(&route.function).is_none() {
            return Err(TableError::FunctionNotFound {
                route: key,
                function: route.function,
            });
        }
        if let Some(q) = &route.qualifier {
            if !inv.qualifier_exists(&route.function, Some(q)) {
                return Err(TableError::QualifierNotFound {
                    route: key,
                    function: route.function.clone(),
                    qualifier: q.clone(),
                });
            }
        }
        let mut routes = self.inner.routes.lock().await;
        let now = nimbus_core::now_ms();
        let prev = routes.get(&key).cloned();
        route.created_ms = prev.as_ref().map_or(now, |p| p.created_ms);
        route.updated_ms = now;
        let stored = StoredRoute {
            api: DEFAULT_API.to_string(),
            route_key: key.clone(),
            config: serde_json::to_string(&route).expect("a route serialises"),
            updated_ms: now,
        };
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.put(&stored))
            .await
            .map_err(|e| StoreError::Corrupt(format!("route write task failed: {e}")))??;
        let route = Arc::new(route);
        routes.insert(key, route.clone());
        self.swap(&routes);
        Ok((route, prev.is_none()))
    }

    /// Remove a route by its key (`GET /users/{id}`, `$default`).
    pub async fn delete(&self, key: &str) -> Result<Arc<Route>, TableError> {
        let key = RouteKey::parse(key)?.to_string();
        let mut routes = self.inner.routes.lock().await;
        let Some(existing) = routes.get(&key).cloned() else {
            return Err(TableError::RouteNotFound(key));
        };
        let store = self.inner.store.clone();
        let k = key.clone();
        tokio::task::spawn_blocking(move || store.delete(DEFAULT_API, &k))
            .await
            .map_err(|e| StoreError::Corrupt(format!("route delete task failed: {e}")))??;
        routes.remove(&key);
        self.swap(&routes);
        Ok(existing)
    }

    fn swap(&self, routes: &BTreeMap<String, Arc<Route>>) {
        let m = Arc::new(Matcher::new(routes.values()));
        *self
            .inner
            .matcher
            .write()
            .unwrap_or_else(|p| p.into_inner()) = m;
    }

    /// The API's CORS configuration.
    pub fn cors(&self) -> &crate::cors::ApiCors {
        &self.inner.cors
    }

    /// The function URL configs served on the gateway listener.
    pub fn function_urls(&self) -> &crate::function_url::FunctionUrls {
        &self.inner.function_urls
    }

    /// Authorizers, API keys, usage plans and throttling state.
    pub fn auth(&self) -> &crate::auth::GatewayAuth {
        &self.inner.auth
    }

    /// The dispatch seam requests invoke through.
    pub(crate) fn dispatch(&self) -> &Arc<dyn Dispatch> {
        &self.inner.dispatch
    }

    /// Where the gateway's metrics go.
    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }
}
