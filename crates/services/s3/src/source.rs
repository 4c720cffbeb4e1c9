//! S3 as other services read from it ([`nimbus_triggers::sinks::ObjectSource`]):
//! Lambda's `Code.S3Bucket`/`S3Key`/`S3ObjectVersion`.

use crate::error::S3Error;
use crate::store::{self, Store};
use bytes::Bytes;
use nimbus_triggers::sinks::{ObjectSource, SinkError, SinkResult};
use nimbus_triggers::BoxFuture;

pub struct Objects {
    pub store: Store,
}

fn not_found(e: S3Error) -> SinkError {
    SinkError::NotFound(format!("{}: {}", e.0.code, e.0.message))
}

impl ObjectSource for Objects {
    fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        max: usize,
    ) -> BoxFuture<'_, SinkResult<Bytes>> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let version_id = version_id.map(str::to_string);
        Box::pin(async move {
            let (b, k) = (bucket.clone(), key.clone());
            let object =
                self.store
                    .read(move |c| {
                        store::require_bucket(c, &b)?;
                        match &version_id {
                            None => store::get_object(c, &b, &k)?
                                .ok_or_else(|| S3Error::no_such_key(&k)),
                            Some(v) => match store::get_version(c, &b, &k, v)? {
                                Some((o, false)) => Ok(o),
                                _ => Err(S3Error::new(
                                    http::StatusCode::NOT_FOUND,
                                    "NoSuchVersion",
                                    "The specified version does not exist.",
                                )),
                            },
                        }
                    })
                    .await
                    .map_err(not_found)?;
            if object.size as usize > max {
                return Err(SinkError::Rejected {
                    code: "EntityTooLarge".into(),
                    message: format!("{bucket}/{key} is {} bytes, over {max}", object.size),
                });
            }
            let store = self.store.clone();
            let blob = object.blob.clone();
            let read = self
                .store
                .read(move |c| {
                    let mut b = store.open_blob(c, &blob)?;
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut b, &mut out).map_err(crate::error::internal)?;
                    Ok(out)
                })
                .await;
            let bytes =
                read.map_err(|e| SinkError::Transient(format!("reading {bucket}/{key}: {e:?}")))?;
            Ok(Bytes::from(bytes))
        })
    }
}
