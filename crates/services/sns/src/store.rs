//! `<data>/sns.db`: topics, subscriptions, the FIFO deduplication window, the
//! delivery outbox (each accepted message once in `messages`, one `outbox` row per
//! matching subscription, committed in the publish's transaction) and the record of
//! `sms`/`application` deliveries; then (migration 2) platform applications and
//! their endpoints, the SMS account attributes, opted-out phone numbers and the
//! SMS sandbox's destination numbers.

use nimbus_store::migrate::{Migration, Schema, Step};

pub static SCHEMA: Schema = Schema {
    file: "sns.db",
    migrations: &[
        Migration {
            name: "topics, subscriptions, outbox, dedup, recorded deliveries",
            step: Step::Sql(
                "
CREATE TABLE topics(
  arn TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  attrs TEXT NOT NULL,
  tags TEXT NOT NULL,
  seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE subscriptions(
  arn TEXT PRIMARY KEY,
  topic_arn TEXT NOT NULL,
  protocol TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  owner TEXT NOT NULL,
  attrs TEXT NOT NULL,
  confirmed INTEGER NOT NULL,
  token TEXT
);
CREATE TABLE messages(
  id TEXT PRIMARY KEY,
  body TEXT NOT NULL
);
CREATE TABLE outbox(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sub_arn TEXT NOT NULL,
  message_id TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  due_ms INTEGER NOT NULL,
  group_key TEXT
);
CREATE INDEX outbox_due ON outbox(due_ms);
CREATE INDEX outbox_message ON outbox(message_id);
CREATE TABLE dedup(
  topic_arn TEXT NOT NULL,
  dedup_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  seq TEXT,
  expires_ms INTEGER NOT NULL,
  PRIMARY KEY(topic_arn, dedup_id)
);
CREATE TABLE recorded(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  protocol TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  sub_arn TEXT NOT NULL,
  topic_arn TEXT NOT NULL,
  message_id TEXT NOT NULL,
  body TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);
",
            ),
        },
        Migration {
            name: "platform applications, endpoints, SMS attributes, opt-outs, SMS sandbox",
            step: Step::Sql(
                "
CREATE TABLE platform_apps(
  arn TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  platform TEXT NOT NULL,
  attrs TEXT NOT NULL
);
CREATE TABLE endpoints(
  arn TEXT PRIMARY KEY,
  app_arn TEXT NOT NULL,
  token TEXT NOT NULL,
  attrs TEXT NOT NULL
);
CREATE INDEX endpoints_app ON endpoints(app_arn, token);
CREATE TABLE sms_attributes(
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE opted_out(
  phone TEXT PRIMARY KEY,
  at_ms INTEGER NOT NULL
);
CREATE TABLE sms_sandbox(
  phone TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  otp TEXT NOT NULL,
  language TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);
",
            ),
        },
    ],
};
