//! `nimbus rm NAME [--cascade]`: delete a function — refused while gateway routes,
//! schedules, event-source mappings, SNS subscriptions, EventBridge rule targets,
//! S3 bucket notifications, gateway Lambda authorizers or other functions' async
//! destinations still invoke it (they
//! would answer 500 or fail their deliveries forever), unless `--cascade` removes
//! them first. Each is removed through its own API on the edge (`Unsubscribe`,
//! `RemoveTargets`, `PutBucketNotificationConfiguration` without the function's
//! configurations, …), as a client would.

use super::mappings::{enc, list_all};
use crate::client::Client;
use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    name: String,
    /// Also remove the routes, schedules and event-source mappings that invoke it.
    #[arg(long)]
    cascade: bool,
}

/// Something that invokes a function, and how to remove it.
struct Dependent {
    what: String,
    removal: Removal,
}

enum Removal {
    /// `DELETE` this path of the control or Lambda API.
    Delete(String),
    /// SNS `Unsubscribe` of this subscription ARN.
    Unsubscribe(String),
    /// EventBridge `RemoveTargets`.
    RemoveTargets {
        bus: String,
        rule: String,
        ids: Vec<String>,
    },
    /// The bucket's notification configuration again, without the function's
    /// Lambda configurations.
    BucketNotifications(String),
    /// A gateway Lambda authorizer (no route uses it, or the routes go first).
    Authorizer(String),
    /// Another function's async-invocation settings without the destinations
    /// that name this function: `(function, qualifier, config now)`.
    Destinations(String, String, serde_json::Value),
}

/// A listing of an optional service: `None` when the server does not run it.
async fn admin_list(client: &Client, path: &str) -> Result<Option<serde_json::Value>> {
    match client.get_json(path).await {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if format!("{e:#}").contains("(HTTP 404") || format!("{e:#}").contains("NotFound") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The S3 notification document `xml` without the `CloudFunctionConfiguration`s
/// that invoke function `name`, and how many were dropped.
fn without_function(xml: &str, name: &str) -> (String, usize) {
    const OPEN: &str = "<CloudFunctionConfiguration>";
    const CLOSE: &str = "</CloudFunctionConfiguration>";
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    let mut dropped = 0;
    while let Some(i) = rest.find(OPEN) {
        let Some(j) = rest[i..].find(CLOSE) else {
            break;
        };
        let block = &rest[i..i + j + CLOSE.len()];
        let target = block
            .split_once("<CloudFunction>")
            .and_then(|(_, b)| b.split_once("</CloudFunction>"))
            .map(|(t, _)| t.trim())
            .unwrap_or("");
        out.push_str(&rest[..i]);
        if names_function(target, name) {
            dropped += 1;
        } else {
            out.push_str(block);
        }
        rest = &rest[i + j + CLOSE.len()..];
    }
    out.push_str(rest);
    (out, dropped)
}

/// Whether `target` (a function name, `name:qualifier`, or a function ARN, possibly
/// qualified) names the function `name`.
fn names_function(target: &str, name: &str) -> bool {
    let bare = target
        .split_once(":function:")
        .map(|(_, rest)| rest)
        .unwrap_or(target);
    bare.split(':').next() == Some(name)
}

async fn dependents(client: &Client, name: &str) -> Result<Vec<Dependent>> {
    let mut out = Vec::new();
    let routes = client.get_json("/_nimbus/routes").await?;
    for r in routes["routes"].as_array().into_iter().flatten() {
        let (Some(key), Some(f)) = (r["route_key"].as_str(), r["function"].as_str()) else {
            continue;
        };
        if names_function(f, name) {
            out.push(Dependent {
                what: format!("route {key}"),
                removal: Removal::Delete(format!("/_nimbus/routes?route_key={}", enc(key))),
            });
        }
    }
    let schedules = client.get_json("/_nimbus/schedules").await?;
    for s in schedules["schedules"].as_array().into_iter().flatten() {
        let (Some(n), Some(f)) = (s["name"].as_str(), s["function"].as_str()) else {
            continue;
        };
        if names_function(f, name) {
            out.push(Dependent {
                what: format!("schedule {n}"),
                removal: Removal::Delete(format!("/_nimbus/schedules/{}", enc(n))),
            });
        }
    }
    for m in list_all(client, None, None).await? {
        let (Some(uuid), Some(f)) = (m["UUID"].as_str(), m["FunctionArn"].as_str()) else {
            continue;
        };
        if names_function(f, name) {
            out.push(Dependent {
                what: format!(
                    "event-source mapping {uuid} from {}",
                    m["EventSourceArn"].as_str().unwrap_or("?")
                ),
                removal: Removal::Delete(format!("/2015-03-31/event-source-mappings/{uuid}")),
            });
        }
    }
    if let Some(v) = admin_list(client, "/_nimbus/services/sns/subscriptions").await? {
        for sub in v["Subscriptions"].as_array().into_iter().flatten() {
            let (Some(arn), Some(endpoint)) =
                (sub["SubscriptionArn"].as_str(), sub["Endpoint"].as_str())
            else {
                continue;
            };
            if sub["Protocol"] == "lambda" && names_function(endpoint, name) {
                out.push(Dependent {
                    what: format!(
                        "SNS subscription {arn} to topic {}",
                        sub["TopicArn"].as_str().unwrap_or("?")
                    ),
                    removal: Removal::Unsubscribe(arn.to_string()),
                });
            }
        }
    }
    if let Some(v) = admin_list(client, "/_nimbus/services/events/buses").await? {
        for bus in v["buses"].as_array().into_iter().flatten() {
            let bus_name = bus["name"].as_str().unwrap_or("default");
            for rule in bus["rules"].as_array().into_iter().flatten() {
                let ids: Vec<String> = rule["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| {
                        t["Arn"]
                            .as_str()
                            .is_some_and(|a| a.contains(":function:") && names_function(a, name))
                    })
                    .filter_map(|t| t["Id"].as_str().map(str::to_string))
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let rule_name = rule["name"].as_str().unwrap_or("");
                out.push(Dependent {
                    what: format!(
                        "EventBridge rule {rule_name} (bus {bus_name}) target{} {}",
                        if ids.len() == 1 { "" } else { "s" },
                        ids.join(", ")
                    ),
                    removal: Removal::RemoveTargets {
                        bus: bus_name.to_string(),
                        rule: rule_name.to_string(),
                        ids,
                    },
                });
            }
        }
    }
    if let Some(v) = admin_list(client, "/_nimbus/services/s3/buckets").await? {
        for b in v["Buckets"].as_array().into_iter().flatten() {
            let Some(bucket) = b["Name"].as_str() else {
                continue;
            };
            if b["Notifications"] != true {
                continue;
            }
            let xml = bucket_notifications(client, bucket).await?;
            let (_, n) = without_function(&xml, name);
            if n > 0 {
                out.push(Dependent {
                    what: format!(
                        "S3 bucket {bucket}: {n} notification configuration{}",
                        if n == 1 { "" } else { "s" }
                    ),
                    removal: Removal::BucketNotifications(bucket.to_string()),
                });
            }
        }
    }
    // Other functions whose async invocations end here.
    let fns = client.get_json("/_nimbus/functions").await?;
    for f in fns["functions"].as_array().into_iter().flatten() {
        let Some(other) = f["function"]["name"].as_str() else {
            continue;
        };
        if other == name {
            continue;
        }
        let list = client
            .get_json(&format!(
                "/2019-09-25/functions/{}/event-invoke-config/list",
                enc(other)
            ))
            .await?;
        for c in list["FunctionEventInvokeConfigs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let hits: Vec<&str> = ["OnSuccess", "OnFailure"]
                .into_iter()
                .filter(|w| {
                    c["DestinationConfig"][*w]["Destination"]
                        .as_str()
                        .is_some_and(|d| d.contains(":function:") && names_function(d, name))
                })
                .collect();
            if hits.is_empty() {
                continue;
            }
            let qualifier = c["FunctionArn"]
                .as_str()
                .and_then(|a| a.split(":function:").nth(1))
                .and_then(|rest| rest.split(':').nth(1))
                .unwrap_or("$LATEST")
                .to_string();
            out.push(Dependent {
                what: format!(
                    "the {} destination of {other} ({qualifier})",
                    hits.join(" and ")
                ),
                removal: Removal::Destinations(other.to_string(), qualifier, c.clone()),
            });
        }
    }
    let auths = client.get_json("/_nimbus/authorizers").await?;
    for a in auths["authorizers"].as_array().into_iter().flatten() {
        let (Some(n), Some(f)) = (a["name"].as_str(), a["lambda"]["function"].as_str()) else {
            continue;
        };
        if names_function(f, name) {
            out.push(Dependent {
                what: format!("gateway authorizer {n}"),
                removal: Removal::Authorizer(n.to_string()),
            });
        }
    }
    Ok(out)
}

fn bucket_url(client: &Client, bucket: &str) -> String {
    client.url(&format!("/{}?notification", enc(bucket)))
}

/// A path-style S3 request: signed ones reach S3 by their credential scope,
/// unsigned ones by S3's path-style host name.
fn s3_request(client: &Client, method: reqwest::Method, bucket: &str) -> reqwest::RequestBuilder {
    let req = client.http.request(method, bucket_url(client, bucket));
    if client.signs() {
        req
    } else {
        req.header("host", "s3.localhost")
    }
}

async fn bucket_notifications(client: &Client, bucket: &str) -> Result<String> {
    let resp = client
        .send_as("s3", s3_request(client, reqwest::Method::GET, bucket))
        .await
        .with_context(|| format!("reading the notifications of bucket {bucket}"))?;
    Ok(resp.text().await?)
}

async fn remove(client: &Client, name: &str, r: &Removal) -> Result<()> {
    match r {
        Removal::Delete(path) => {
            client.send(client.http.delete(client.url(path))).await?;
        }
        Removal::Unsubscribe(arn) => {
            client
                .send_as(
                    "sns",
                    client.http.post(client.url("/")).form(&[
                        ("Action", "Unsubscribe"),
                        ("Version", "2010-03-31"),
                        ("SubscriptionArn", arn.as_str()),
                    ]),
                )
                .await?;
        }
        Removal::RemoveTargets { bus, rule, ids } => {
            client
                .send_as(
                    "events",
                    client
                        .http
                        .post(client.url("/"))
                        .header("x-amz-target", "AWSEvents.RemoveTargets")
                        .header("content-type", "application/x-amz-json-1.1")
                        .body(
                            serde_json::json!({"Rule": rule, "EventBusName": bus, "Ids": ids})
                                .to_string(),
                        ),
                )
                .await?;
        }
        Removal::BucketNotifications(bucket) => {
            // Read again right before writing: the configuration may have changed.
            let xml = bucket_notifications(client, bucket).await?;
            let (doc, _) = without_function(&xml, name);
            client
                .send_as(
                    "s3",
                    s3_request(client, reqwest::Method::PUT, bucket)
                        .header("content-type", "application/xml")
                        .body(doc),
                )
                .await?;
        }
        Removal::Destinations(function, qualifier, c) => {
            let mut config = c["DestinationConfig"].clone();
            for w in ["OnSuccess", "OnFailure"] {
                let here = config[w]["Destination"]
                    .as_str()
                    .is_some_and(|d| d.contains(":function:") && names_function(d, name));
                if here {
                    config[w] = serde_json::json!({});
                }
            }
            let mut body = serde_json::json!({ "DestinationConfig": config });
            for k in ["MaximumRetryAttempts", "MaximumEventAgeInSeconds"] {
                if !c[k].is_null() {
                    body[k] = c[k].clone();
                }
            }
            client
                .send(
                    client
                        .http
                        .put(client.url(&format!(
                            "/2019-09-25/functions/{}/event-invoke-config",
                            enc(function)
                        )))
                        .query(&[("Qualifier", qualifier.as_str())])
                        .json(&body),
                )
                .await?;
        }
        Removal::Authorizer(n) => {
            client
                .send(
                    client
                        .http
                        .delete(client.url(&format!("/_nimbus/authorizers/{}", enc(n)))),
                )
                .await?;
        }
    }
    Ok(())
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    // A missing function is the server's 404, whatever points at the name.
    client
        .send(
            client
                .http
                .get(client.url(&format!("/_nimbus/functions/{}", a.name))),
        )
        .await?;
    let deps = dependents(client, &a.name).await?;
    // An authorizer that routes of other functions use cannot go with this one:
    // those routes would lose their access control.
    let routes = client.get_json("/_nimbus/routes").await?;
    let mut blocked = Vec::new();
    for d in &deps {
        if let Removal::Authorizer(n) = &d.removal {
            for r in routes["routes"].as_array().into_iter().flatten() {
                let f = r["function"].as_str().unwrap_or("");
                if r["authorizer"] == n.as_str() && !names_function(f, &a.name) {
                    blocked.push(format!(
                        "route {} (runs {f}) uses authorizer {n}",
                        r["route_key"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    if !blocked.is_empty() {
        eprintln!("error: {} is a gateway authorizer's function:", a.name);
        for b in &blocked {
            eprintln!("  {b}");
        }
        eprintln!("nothing was deleted; give those routes another authorizer first (`nimbus route add … --auth`)");
        return Ok(1);
    }
    if !deps.is_empty() && !a.cascade {
        eprintln!("error: {} is still invoked by:", a.name);
        for d in &deps {
            eprintln!("  {}", d.what);
        }
        eprintln!("nothing was deleted; remove them first, or pass --cascade to remove them with the function");
        return Ok(1);
    }
    // Routes first: an authorizer goes only once no route uses it.
    let (first, last): (Vec<&Dependent>, Vec<&Dependent>) = deps
        .iter()
        .partition(|d| !matches!(d.removal, Removal::Authorizer(_)));
    for d in first.into_iter().chain(last) {
        remove(client, &a.name, &d.removal)
            .await
            .with_context(|| format!("removing {}", d.what))?;
        println!("Deleted {}", d.what);
    }
    client
        .send(
            client
                .http
                .delete(client.url(&format!("/_nimbus/functions/{}", a.name))),
        )
        .await?;
    println!("Deleted {}", a.name);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::{names_function, without_function};

    #[test]
    fn drops_only_the_functions_notification_configurations() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><QueueConfiguration><Id>q</Id><Queue>arn:aws:sqs:us-east-1:000000000000:q</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration><CloudFunctionConfiguration><Id>a</Id><CloudFunction>arn:aws:lambda:us-east-1:000000000000:function:thumb</CloudFunction><Event>s3:ObjectCreated:*</Event></CloudFunctionConfiguration><CloudFunctionConfiguration><Id>b</Id><CloudFunction>arn:aws:lambda:us-east-1:000000000000:function:other</CloudFunction><Event>s3:ObjectRemoved:*</Event></CloudFunctionConfiguration><CloudFunctionConfiguration><Id>c</Id><CloudFunction>arn:aws:lambda:us-east-1:000000000000:function:thumb:live</CloudFunction><Event>s3:ObjectRemoved:*</Event></CloudFunctionConfiguration></NotificationConfiguration>"#;
        let (out, n) = without_function(xml, "thumb");
        assert_eq!(n, 2);
        assert!(out.contains("<Id>q</Id>") && out.contains("<Id>b</Id>"));
        assert!(!out.contains("function:thumb"));
        assert!(out.ends_with("</NotificationConfiguration>"));
        let (same, n) = without_function(xml, "nothing");
        assert_eq!((same.as_str(), n), (xml, 0));
    }

    #[test]
    fn names_a_function_by_name_qualifier_or_arn() {
        assert!(names_function("orders", "orders"));
        assert!(names_function("orders:live", "orders"));
        assert!(names_function(
            "arn:aws:lambda:us-east-1:000000000000:function:orders",
            "orders"
        ));
        assert!(names_function(
            "arn:aws:lambda:us-east-1:000000000000:function:orders:3",
            "orders"
        ));
        assert!(!names_function("orders-v2", "orders"));
        assert!(!names_function(
            "arn:aws:lambda:us-east-1:000000000000:function:other",
            "orders"
        ));
    }
}
