//! The app engine (`nimbus-apps`): applies an app's CloudFormation-shaped
//! resources ([`nimbus_manifest::template::Template`]) on the server as one
//! journaled change, like CloudFormation does for a stack.
//!
//! * [`engine`]: plan → journal → apply step by step → commit → cleanup, and
//!   the recovery on start of a change a crash interrupted (rolled back, or its
//!   cleanup finished) — never left half-applied;
//! * [`intrinsics`]: `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`,
//!   `Fn::Split`, `Fn::If` and conditions, `Fn::ImportValue`, pseudo parameters;
//! * [`graph`]: dependency order (`DependsOn` and references), cycles refused;
//! * [`naming`]: CloudFormation's physical names (`<stack>-<logicalId>-<SUFFIX>`);
//! * [`providers`]: one module per service, each calling the service's public
//!   operations in process ([`services`]) — never its database;
//! * [`store`]: `apps.db` (WAL, `synchronous=FULL`);
//! * [`api`]: the control API under `/_nimbus/apps` (JSON).

pub mod api;
pub mod engine;
pub mod graph;
pub mod intrinsics;
pub mod model;
pub mod naming;
pub mod providers;
pub mod services;
pub mod store;

pub use engine::{DeployOutcome, DeployRequest, Engine, EngineError};
pub use services::Services;
