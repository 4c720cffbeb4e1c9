//! The awsQuery operations: parameters in, XML out.

use crate::mobile::PlatformApp;
use crate::model::*;
use crate::ops::{Op, META};
use crate::state::{PublishInput, Sns};
use axum::response::Response;
use nimbus_protocol::{query_response, AwsError, XmlWriter};
use nimbus_svc_common::Call;
use std::collections::{BTreeMap, BTreeSet};

/// Writes a successful answer from its result's members.
type Answer<'a> = dyn Fn(&dyn Fn(&mut XmlWriter)) -> Response + 'a;

/// The form parameters of one request.
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn req(&self, k: &str) -> Result<&str, AwsError> {
        self.get(k)
            .ok_or_else(|| invalid_parameter(format!("Invalid parameter: {k}")))
    }

    /// The indexes `N` of `{prefix}.N.…` keys, in numeric order.
    fn indexes(&self, prefix: &str) -> Vec<String> {
        let mut set = BTreeSet::new();
        let p = format!("{prefix}.");
        for (k, _) in &self.0 {
            if let Some(rest) = k.strip_prefix(&p) {
                let n = rest.split('.').next().unwrap_or("");
                if let Ok(i) = n.parse::<u32>() {
                    set.insert(i);
                }
            }
        }
        set.into_iter().map(|i| i.to_string()).collect()
    }

    /// `{prefix}.entry.N.key` / `.value`.
    pub fn map(&self, prefix: &str) -> BTreeMap<String, String> {
        let base = format!("{prefix}.entry");
        self.indexes(&base)
            .into_iter()
            .filter_map(|i| {
                let k = self.get(&format!("{base}.{i}.key"))?;
                let v = self.get(&format!("{base}.{i}.value")).unwrap_or("");
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// `{prefix}.member.N`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let base = format!("{prefix}.member");
        self.indexes(&base)
            .into_iter()
            .filter_map(|i| self.get(&format!("{base}.{i}")).map(str::to_string))
            .collect()
    }

    /// `{prefix}.member.N.Key` / `.Value`.
    pub fn tags(&self, prefix: &str) -> Vec<(String, String)> {
        let base = format!("{prefix}.member");
        self.indexes(&base)
            .into_iter()
            .filter_map(|i| {
                let k = self.get(&format!("{base}.{i}.Key"))?;
                let v = self.get(&format!("{base}.{i}.Value")).unwrap_or("");
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// `{prefix}.entry.N.Name` / `.Value.DataType|StringValue|BinaryValue`.
    pub fn message_attributes(&self, prefix: &str) -> Result<BTreeMap<String, Attr>, AwsError> {
        let base = format!("{prefix}.entry");
        let mut out = BTreeMap::new();
        for i in self.indexes(&base) {
            let Some(name) = self.get(&format!("{base}.{i}.Name")) else {
                continue;
            };
            let data_type = self
                .get(&format!("{base}.{i}.Value.DataType"))
                .ok_or_else(|| {
                    invalid_value(format!(
                        "The message attribute '{name}' must contain non-empty message attribute type."
                    ))
                })?;
            out.insert(
                name.to_string(),
                Attr {
                    data_type: data_type.to_string(),
                    string_value: self
                        .get(&format!("{base}.{i}.Value.StringValue"))
                        .map(str::to_string),
                    binary_value: self
                        .get(&format!("{base}.{i}.Value.BinaryValue"))
                        .map(str::to_string),
                },
            );
        }
        Ok(out)
    }

    fn publish_input(&self, prefix: &str) -> Result<PublishInput, AwsError> {
        let k = |n: &str| {
            if prefix.is_empty() {
                n.to_string()
            } else {
                format!("{prefix}.{n}")
            }
        };
        let structure = self.get(&k("MessageStructure"));
        if structure.is_some_and(|s| s != "json") {
            return Err(invalid_parameter(
                "Invalid parameter: MessageStructure Reason: the only supported value is json",
            ));
        }
        Ok(PublishInput {
            message: self.get(&k("Message")).unwrap_or("").to_string(),
            subject: self.get(&k("Subject")).map(str::to_string),
            structure_json: structure.is_some(),
            attributes: self.message_attributes(&k("MessageAttributes"))?,
            group_id: self.get(&k("MessageGroupId")).map(str::to_string),
            dedup_id: self.get(&k("MessageDeduplicationId")).map(str::to_string),
        })
    }
}

fn entries(w: &mut XmlWriter, name: &str, m: &BTreeMap<String, String>) {
    w.nested(name, |w| {
        for (k, v) in m {
            w.nested("entry", |w| {
                w.element("key", k);
                w.element("value", v);
            });
        }
    });
}

fn validate_arn(arn: &str, what: &str) -> Result<(), AwsError> {
    let p: Vec<&str> = arn.splitn(6, ':').collect();
    if p.len() == 6 && p[0] == "arn" && p[2] == "sns" && !p[5].is_empty() {
        Ok(())
    } else {
        Err(invalid_parameter(format!("Invalid parameter: {what}")))
    }
}

/// Serve one decoded call (blocking: SQLite).
pub fn handle(sns: &Sns, call: &Call<Op>) -> Response {
    let p = Params(call.params.clone());
    let rid = call.request_id.as_str();
    let action = call.op.name();
    let ok = |f: &dyn Fn(&mut XmlWriter)| query_response(&META, action, rid, Some(f));
    let empty = || query_response(&META, action, rid, None);
    let result: Result<Response, AwsError> = (|| {
        Ok(match call.op {
            Op::CreateTopic => {
                let name = p.req("Name")?;
                let arn = sns.create_topic(name, p.map("Attributes"), p.tags("Tags"))?;
                ok(&|w| {
                    w.element("TopicArn", &arn);
                })
            }
            Op::DeleteTopic => {
                let arn = p.req("TopicArn")?;
                validate_arn(arn, "TopicArn")?;
                sns.delete_topic(arn)?;
                empty()
            }
            Op::ListTopics => {
                let (topics, next) = sns.list_topics(p.get("NextToken"))?;
                ok(&|w| {
                    w.nested("Topics", |w| {
                        for t in &topics {
                            w.nested("member", |w| {
                                w.element("TopicArn", t);
                            });
                        }
                    });
                    w.element_opt("NextToken", next.as_deref());
                })
            }
            Op::GetTopicAttributes => {
                let arn = p.req("TopicArn")?;
                validate_arn(arn, "TopicArn")?;
                let attrs = sns.topic_attributes(arn)?;
                ok(&|w| entries(w, "Attributes", &attrs))
            }
            Op::SetTopicAttributes => {
                let arn = p.req("TopicArn")?;
                validate_arn(arn, "TopicArn")?;
                sns.set_topic_attribute(
                    arn,
                    p.req("AttributeName")?,
                    p.get("AttributeValue").unwrap_or(""),
                )?;
                empty()
            }
            Op::AddPermission => {
                let arn = p.req("TopicArn")?;
                validate_arn(arn, "TopicArn")?;
                let accounts = p.list("AWSAccountId");
                let actions = p.list("ActionName");
                sns.edit_permission(arn, p.req("Label")?, Some((&accounts, &actions)))?;
                empty()
            }
            Op::RemovePermission => {
                let arn = p.req("TopicArn")?;
                validate_arn(arn, "TopicArn")?;
                sns.edit_permission(arn, p.req("Label")?, None)?;
                empty()
            }
            Op::TagResource => {
                sns.tag(p.req("ResourceArn")?, p.tags("Tags"))?;
                ok(&|_| {})
            }
            Op::UntagResource => {
                sns.untag(p.req("ResourceArn")?, &p.list("TagKeys"))?;
                ok(&|_| {})
            }
            Op::ListTagsForResource => {
                let tags = sns.tags(p.req("ResourceArn")?)?;
                ok(&|w| {
                    w.nested("Tags", |w| {
                        for (k, v) in &tags {
                            w.nested("member", |w| {
                                w.element("Key", k);
                                w.element("Value", v);
                            });
                        }
                    });
                })
            }
            Op::Subscribe => {
                let topic = p.req("TopicArn")?;
                validate_arn(topic, "TopicArn")?;
                if p.get("Protocol") == Some("application") {
                    let ep = p.get("Endpoint").unwrap_or("");
                    if ep.contains(":endpoint/") && sns.endpoint(ep)?.is_none() {
                        return Err(not_found("Endpoint does not exist"));
                    }
                }
                let (arn, confirmed) = sns.subscribe(
                    topic,
                    p.req("Protocol")?,
                    p.get("Endpoint"),
                    p.map("Attributes"),
                )?;
                let shown = if confirmed || p.get("ReturnSubscriptionArn") == Some("true") {
                    arn
                } else {
                    "pending confirmation".to_string()
                };
                ok(&|w| {
                    w.element("SubscriptionArn", &shown);
                })
            }
            Op::ConfirmSubscription => {
                let topic = p.req("TopicArn")?;
                validate_arn(topic, "TopicArn")?;
                let arn = sns.confirm(topic, p.req("Token")?)?;
                ok(&|w| {
                    w.element("SubscriptionArn", &arn);
                })
            }
            Op::Unsubscribe => {
                let arn = p.req("SubscriptionArn")?;
                validate_arn(arn, "SubscriptionArn")?;
                sns.unsubscribe(arn)?;
                empty()
            }
            Op::ListSubscriptions | Op::ListSubscriptionsByTopic => {
                let topic = if call.op == Op::ListSubscriptionsByTopic {
                    let t = p.req("TopicArn")?;
                    validate_arn(t, "TopicArn")?;
                    Some(t)
                } else {
                    None
                };
                let (subs, next) = sns.list_subscriptions(topic, p.get("NextToken"))?;
                ok(&|w| {
                    w.nested("Subscriptions", |w| {
                        for s in &subs {
                            w.nested("member", |w| {
                                w.element(
                                    "SubscriptionArn",
                                    if s.confirmed {
                                        &s.arn
                                    } else {
                                        "PendingConfirmation"
                                    },
                                );
                                w.element("Owner", &s.owner);
                                w.element("Protocol", &s.protocol);
                                w.element("Endpoint", &s.endpoint);
                                w.element("TopicArn", &s.topic_arn);
                            });
                        }
                    });
                    w.element_opt("NextToken", next.as_deref());
                })
            }
            Op::GetSubscriptionAttributes => {
                let arn = p.req("SubscriptionArn")?;
                validate_arn(arn, "SubscriptionArn")?;
                let attrs = sns.subscription_attributes(arn)?;
                ok(&|w| entries(w, "Attributes", &attrs))
            }
            Op::SetSubscriptionAttributes => {
                let arn = p.req("SubscriptionArn")?;
                validate_arn(arn, "SubscriptionArn")?;
                sns.set_subscription_attribute(
                    arn,
                    p.req("AttributeName")?,
                    p.get("AttributeValue").unwrap_or(""),
                )?;
                empty()
            }
            Op::Publish => {
                if let Some(phone) = p.get("PhoneNumber") {
                    let id = sns.record_sms(phone, p.get("Message").unwrap_or(""))?;
                    return Ok(ok(&|w| {
                        w.element("MessageId", &id);
                    }));
                }
                let topic = match (p.get("TopicArn"), p.get("TargetArn")) {
                    (Some(t), _) => t,
                    (None, Some(t)) => t,
                    (None, None) => {
                        return Err(invalid_parameter(
                            "Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter",
                        ))
                    }
                };
                if topic.contains(":endpoint/") {
                    validate_arn(topic, "TargetArn")?;
                    let id = sns.publish_to_endpoint(topic, p.publish_input("")?)?;
                    return Ok(ok(&|w| {
                        w.element("MessageId", &id);
                    }));
                }
                validate_arn(topic, "TopicArn")?;
                let input = p.publish_input("")?;
                let (id, seq) = sns.publish(topic, input)?;
                ok(&|w| {
                    w.element("MessageId", &id);
                    w.element_opt("SequenceNumber", seq.as_deref());
                })
            }
            Op::PublishBatch => publish_batch(sns, &p, &ok)?,
            _ => return mobile_ops(sns, call.op, &p, &ok, &empty),
        })
    })();
    match result {
        Ok(r) => r,
        Err(e) => call.error(&e),
    }
}

fn publish_batch(sns: &Sns, p: &Params, ok: &Answer<'_>) -> Result<Response, AwsError> {
    let topic = p.req("TopicArn")?;
    validate_arn(topic, "TopicArn")?;
    let base = "PublishBatchRequestEntries.member";
    let idx = p.indexes(base);
    if idx.is_empty() {
        return Err(AwsError::new(
            http::StatusCode::BAD_REQUEST,
            "EmptyBatchRequest",
            "The batch request doesn't contain any entries.",
        ));
    }
    if idx.len() > 10 {
        return Err(AwsError::new(
            http::StatusCode::BAD_REQUEST,
            "TooManyEntriesInBatchRequest",
            "The batch request contains more entries than permissible.",
        ));
    }
    let mut ids = Vec::new();
    let mut inputs = Vec::new();
    let mut early_fail: Vec<(String, AwsError)> = Vec::new();
    let mut total = 0usize;
    for i in &idx {
        let prefix = format!("{base}.{i}");
        let id = p.get(&format!("{prefix}.Id")).unwrap_or("").to_string();
        let valid_id = !id.is_empty()
            && id.len() <= 80
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_id {
            return Err(AwsError::new(
                http::StatusCode::BAD_REQUEST,
                "InvalidBatchEntryId",
                "The Id of a batch entry in a batch request doesn't abide by the specification.",
            ));
        }
        if ids.contains(&id) {
            return Err(AwsError::new(
                http::StatusCode::BAD_REQUEST,
                "BatchEntryIdsNotDistinct",
                "Two or more batch entries in the request have the same Id.",
            ));
        }
        ids.push(id.clone());
        match p.publish_input(&prefix) {
            Ok(inp) => {
                total += message_size(&inp.message, &inp.attributes);
                inputs.push((id, inp));
            }
            Err(e) => early_fail.push((id, e)),
        }
    }
    if total > MAX_MESSAGE_BYTES {
        return Err(AwsError::new(
            http::StatusCode::BAD_REQUEST,
            "BatchRequestTooLong",
            "The length of all the messages put together is more than the limit.",
        ));
    }
    let (batch_ids, batch_inputs): (Vec<String>, Vec<PublishInput>) = inputs.into_iter().unzip();
    let results = sns.publish_many(topic, batch_inputs)?;
    let mut good = Vec::new();
    let mut bad: Vec<(String, AwsError)> = early_fail;
    for (id, r) in batch_ids.into_iter().zip(results) {
        match r {
            Ok((mid, seq)) => good.push((id, mid, seq)),
            Err(e) => bad.push((id, e)),
        }
    }
    Ok(ok(&|w| {
        w.nested("Successful", |w| {
            for (id, mid, seq) in &good {
                w.nested("member", |w| {
                    w.element("Id", id);
                    w.element("MessageId", mid);
                    w.element_opt("SequenceNumber", seq.as_deref());
                });
            }
        });
        w.nested("Failed", |w| {
            for (id, e) in &bad {
                w.nested("member", |w| {
                    w.element("Id", id);
                    w.element("Code", &e.code);
                    w.element("Message", &e.message);
                    w.element("SenderFault", "true");
                });
            }
        });
    }))
}

fn max_results(p: &Params, max: usize) -> Result<usize, AwsError> {
    match p.get("MaxResults") {
        None => Ok(max),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                AwsError::new(
                    http::StatusCode::BAD_REQUEST,
                    "ValidationException",
                    format!("1 validation error detected: Value '{v}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and {max}"),
                )
            }),
    }
}

fn endpoint_list(w: &mut XmlWriter, name: &str, arn_name: &str, items: &[PlatformApp]) {
    w.nested(name, |w| {
        for a in items {
            w.nested("member", |w| {
                w.element(arn_name, &a.arn);
                entries(w, "Attributes", &a.attrs);
            });
        }
    });
}

/// Platform applications and endpoints, SMS, the SMS sandbox and data protection.
fn mobile_ops(
    sns: &Sns,
    op: Op,
    p: &Params,
    ok: &Answer<'_>,
    empty: &dyn Fn() -> Response,
) -> Result<Response, AwsError> {
    Ok(match op {
        Op::CreatePlatformApplication => {
            let arn = sns.create_platform_application(
                p.req("Name")?,
                p.req("Platform")?,
                p.map("Attributes"),
            )?;
            ok(&|w| {
                w.element("PlatformApplicationArn", &arn);
            })
        }
        Op::GetPlatformApplicationAttributes => {
            let arn = p.req("PlatformApplicationArn")?;
            validate_arn(arn, "PlatformApplicationArn")?;
            let attrs = sns.platform_application_attributes(arn)?;
            ok(&|w| entries(w, "Attributes", &attrs))
        }
        Op::SetPlatformApplicationAttributes => {
            let arn = p.req("PlatformApplicationArn")?;
            validate_arn(arn, "PlatformApplicationArn")?;
            sns.set_platform_application_attributes(arn, p.map("Attributes"))?;
            empty()
        }
        Op::ListPlatformApplications => {
            let (apps, next) = sns.list_platform_applications(p.get("NextToken"))?;
            ok(&|w| {
                endpoint_list(w, "PlatformApplications", "PlatformApplicationArn", &apps);
                w.element_opt("NextToken", next.as_deref());
            })
        }
        Op::DeletePlatformApplication => {
            let arn = p.req("PlatformApplicationArn")?;
            validate_arn(arn, "PlatformApplicationArn")?;
            sns.delete_platform_application(arn)?;
            empty()
        }
        Op::CreatePlatformEndpoint => {
            let app = p.req("PlatformApplicationArn")?;
            validate_arn(app, "PlatformApplicationArn")?;
            let arn = sns.create_platform_endpoint(
                app,
                p.req("Token")?,
                p.get("CustomUserData"),
                p.map("Attributes"),
            )?;
            ok(&|w| {
                w.element("EndpointArn", &arn);
            })
        }
        Op::GetEndpointAttributes => {
            let arn = p.req("EndpointArn")?;
            validate_arn(arn, "EndpointArn")?;
            let attrs = sns.endpoint_attributes(arn)?;
            ok(&|w| entries(w, "Attributes", &attrs))
        }
        Op::SetEndpointAttributes => {
            let arn = p.req("EndpointArn")?;
            validate_arn(arn, "EndpointArn")?;
            sns.set_endpoint_attributes(arn, p.map("Attributes"))?;
            empty()
        }
        Op::ListEndpointsByPlatformApplication => {
            let app = p.req("PlatformApplicationArn")?;
            validate_arn(app, "PlatformApplicationArn")?;
            let (eps, next) = sns.list_endpoints(app, p.get("NextToken"))?;
            ok(&|w| {
                endpoint_list(w, "Endpoints", "EndpointArn", &eps);
                w.element_opt("NextToken", next.as_deref());
            })
        }
        Op::DeleteEndpoint => {
            let arn = p.req("EndpointArn")?;
            validate_arn(arn, "EndpointArn")?;
            sns.delete_endpoint(arn)?;
            empty()
        }
        Op::GetSMSAttributes => {
            let attrs = sns.sms_attributes(&p.list("attributes"))?;
            ok(&|w| entries(w, "attributes", &attrs))
        }
        Op::SetSMSAttributes => {
            sns.set_sms_attributes(p.map("attributes"))?;
            ok(&|_| {})
        }
        Op::CheckIfPhoneNumberIsOptedOut => {
            let out = sns.is_opted_out(p.req("phoneNumber")?)?;
            ok(&|w| {
                w.element("isOptedOut", if out { "true" } else { "false" });
            })
        }
        Op::ListPhoneNumbersOptedOut => {
            let (numbers, next) = sns.list_opted_out(p.get("nextToken"))?;
            ok(&|w| {
                w.nested("phoneNumbers", |w| {
                    for n in &numbers {
                        w.element("member", n);
                    }
                });
                w.element_opt("nextToken", next.as_deref());
            })
        }
        Op::OptInPhoneNumber => {
            sns.set_opted_out(p.req("phoneNumber")?, false)?;
            ok(&|_| {})
        }
        Op::CreateSMSSandboxPhoneNumber => {
            sns.create_sandbox_number(
                p.req("PhoneNumber")?,
                p.get("LanguageCode").unwrap_or("en-US"),
            )?;
            ok(&|_| {})
        }
        Op::VerifySMSSandboxPhoneNumber => {
            sns.verify_sandbox_number(p.req("PhoneNumber")?, p.req("OneTimePassword")?)?;
            ok(&|_| {})
        }
        Op::DeleteSMSSandboxPhoneNumber => {
            sns.delete_sandbox_number(p.req("PhoneNumber")?)?;
            ok(&|_| {})
        }
        Op::ListSMSSandboxPhoneNumbers => {
            let max = max_results(p, 100)?;
            let (numbers, next) = sns.list_sandbox_numbers(p.get("NextToken"), max)?;
            ok(&|w| {
                w.nested("PhoneNumbers", |w| {
                    for (n, s) in &numbers {
                        w.nested("member", |w| {
                            w.element("PhoneNumber", n);
                            w.element("Status", s);
                        });
                    }
                });
                w.element_opt("NextToken", next.as_deref());
            })
        }
        Op::GetSMSSandboxAccountStatus => ok(&|w| {
            // Nimbus records SMS to any number: the account is not sandboxed.
            w.element("IsInSandbox", "false");
        }),
        Op::ListOriginationNumbers => {
            max_results(p, 30)?;
            ok(&|w| {
                w.nested("PhoneNumbers", |_| {});
            })
        }
        Op::GetDataProtectionPolicy => {
            let arn = p.req("ResourceArn")?;
            validate_arn(arn, "ResourceArn")?;
            let policy = sns.data_protection_policy(arn)?;
            ok(&|w| {
                w.element("DataProtectionPolicy", &policy);
            })
        }
        Op::PutDataProtectionPolicy => {
            let arn = p.req("ResourceArn")?;
            validate_arn(arn, "ResourceArn")?;
            sns.put_data_protection_policy(arn, p.req("DataProtectionPolicy")?)?;
            empty()
        }
        _ => return Err(internal("operation routed to the wrong handler")),
    })
}
