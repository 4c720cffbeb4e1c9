//! `nimbus rm NAME [--cascade]`: delete a function — refused while gateway routes,
//! schedules or event-source mappings still invoke it (they would answer 500 or
//! fail forever), unless `--cascade` removes them first.

use super::mappings::{enc, list_all};
use crate::client::Client;
use anyhow::Result;

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
    delete_path: String,
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
                delete_path: format!("/_nimbus/routes?route_key={}", enc(key)),
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
                delete_path: format!("/_nimbus/schedules/{}", enc(n)),
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
                delete_path: format!("/2015-03-31/event-source-mappings/{uuid}"),
            });
        }
    }
    Ok(out)
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
    if !deps.is_empty() && !a.cascade {
        eprintln!("error: {} is still invoked by:", a.name);
        for d in &deps {
            eprintln!("  {}", d.what);
        }
        eprintln!("nothing was deleted; remove them first, or pass --cascade to remove them with the function");
        return Ok(1);
    }
    for d in &deps {
        client
            .send(client.http.delete(client.url(&d.delete_path)))
            .await?;
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
    use super::names_function;

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
