//! Mobile push and SMS: platform applications and their endpoints, the SMS
//! account attributes, opted-out phone numbers, the SMS sandbox, and topics'
//! data-protection policies. Everything is in `sns.db` (migration 2), one
//! transaction per change before the answer; nothing leaves the machine — a
//! publish to an endpoint or a phone number is recorded (`recorded`), as
//! `application` and `sms` subscriptions' deliveries are.

use crate::model::*;
use crate::state::{json_map, now_ms, page, parse_map, PublishInput, Sns};
use http::StatusCode;
use nimbus_protocol::AwsError;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use std::collections::BTreeMap;

/// The platforms `CreatePlatformApplication` accepts.
pub const PLATFORMS: &[&str] = &["ADM", "APNS", "APNS_SANDBOX", "GCM", "BAIDU", "MPNS", "WNS"];

/// Platform application attributes `Create`/`SetPlatformApplicationAttributes` accept.
const APP_ATTRS: &[&str] = &[
    "PlatformCredential",
    "PlatformPrincipal",
    "EventEndpointCreated",
    "EventEndpointDeleted",
    "EventEndpointUpdated",
    "EventDeliveryFailure",
    "SuccessFeedbackRoleArn",
    "FailureFeedbackRoleArn",
    "SuccessFeedbackSampleRate",
    "ApplePlatformTeamID",
    "ApplePlatformBundleID",
];

/// Credentials: stored, never returned (as AWS).
const SECRET_APP_ATTRS: &[&str] = &["PlatformCredential", "PlatformPrincipal"];

/// Endpoint attributes.
const ENDPOINT_ATTRS: &[&str] = &["CustomUserData", "Enabled", "Token"];

/// The SMS account attributes `SetSMSAttributes` accepts.
const SMS_ATTRS: &[&str] = &[
    "MonthlySpendLimit",
    "DeliveryStatusIAMRole",
    "DeliveryStatusSuccessSamplingRate",
    "DefaultSenderID",
    "DefaultSMSType",
    "UsageReportS3Bucket",
];

fn resource_not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::NOT_FOUND, "ResourceNotFound", message)
}

fn user_error(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "UserError", message)
}

/// A phone number in E.164 (`+` and 8 to 15 digits).
pub fn valid_e164(phone: &str) -> bool {
    phone
        .strip_prefix('+')
        .is_some_and(|d| (7..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()))
}

fn check_phone(phone: &str) -> Result<(), AwsError> {
    if valid_e164(phone) {
        Ok(())
    } else {
        Err(invalid_parameter(
            "Invalid parameter: PhoneNumber Reason: input incorrectly formatted",
        ))
    }
}

/// `app/<PLATFORM>/<name>` of a platform application ARN.
fn app_parts(arn: &str) -> Option<(&str, &str)> {
    let res = arn.splitn(6, ':').nth(5)?;
    let rest = res.strip_prefix("app/")?;
    let (platform, name) = rest.split_once('/')?;
    (!name.is_empty() && !name.contains('/')).then_some((platform, name))
}

/// The platform of an endpoint ARN (`endpoint/<PLATFORM>/<app>/<id>`).
pub fn endpoint_platform(arn: &str) -> Option<&str> {
    let res = arn.splitn(6, ':').nth(5)?;
    res.strip_prefix("endpoint/")?.split('/').next()
}

/// The body a platform endpoint gets: with `MessageStructure: json`, the
/// platform's entry (`GCM`, `APNS`…), else `default`.
pub fn platform_body(message: &str, structure_json: bool, platform: &str) -> String {
    if !structure_json {
        return message.to_string();
    }
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(message) else {
        return message.to_string();
    };
    match m.get(platform).or_else(|| m.get("default")) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

fn validate_app_attrs(attrs: &BTreeMap<String, String>) -> Result<(), AwsError> {
    for (k, v) in attrs {
        if !APP_ATTRS.contains(&k.as_str()) {
            return Err(invalid_parameter(format!(
                "Invalid parameter: Attributes Reason: Invalid attribute name: {k}"
            )));
        }
        if k == "SuccessFeedbackSampleRate" && !v.parse::<u32>().is_ok_and(|n| n <= 100) {
            return Err(invalid_parameter(
                "Invalid parameter: Attributes Reason: SuccessFeedbackSampleRate must be an integer from 0 to 100",
            ));
        }
    }
    Ok(())
}

fn validate_endpoint_attrs(attrs: &BTreeMap<String, String>) -> Result<(), AwsError> {
    for (k, v) in attrs {
        if !ENDPOINT_ATTRS.contains(&k.as_str()) {
            return Err(invalid_parameter(format!(
                "Invalid parameter: Attributes Reason: Invalid attribute name: {k}"
            )));
        }
        match k.as_str() {
            "Enabled" if !matches!(v.as_str(), "true" | "false") => {
                return Err(invalid_parameter(
                    "Invalid parameter: Attributes Reason: Enabled must be true or false",
                ))
            }
            "Token" if v.is_empty() || v.len() > 8192 => {
                return Err(invalid_parameter(
                    "Invalid parameter: Token Reason: Token must be between 1 and 8192 characters",
                ))
            }
            "CustomUserData" if v.len() > 2048 => {
                return Err(invalid_parameter(
                    "Invalid parameter: CustomUserData Reason: must be at most 2048 bytes",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A sandbox destination number and its status (`Pending`, `Verified`).
pub type SandboxNumber = (String, String);

/// A platform application (or an endpoint) as listed.
pub struct PlatformApp {
    pub arn: String,
    pub attrs: BTreeMap<String, String>,
}

fn shown_app_attrs(stored: &str) -> BTreeMap<String, String> {
    let mut a = parse_map(stored);
    a.retain(|k, _| !SECRET_APP_ATTRS.contains(&k.as_str()));
    a.entry("Enabled".into()).or_insert_with(|| "true".into());
    a
}

fn app_attrs_in(
    conn: &rusqlite::Connection,
    arn: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT attrs FROM platform_apps WHERE arn = ?1",
            [arn],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    stored
        .map(|s| parse_map(&s))
        .ok_or_else(|| not_found("PlatformApplication does not exist"))
}

fn endpoint_in(
    conn: &rusqlite::Connection,
    arn: &str,
) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    let stored: Option<String> = conn
        .query_row("SELECT attrs FROM endpoints WHERE arn = ?1", [arn], |r| {
            r.get(0)
        })
        .optional()
        .map_err(internal)?;
    Ok(stored.map(|s| parse_map(&s)))
}

impl Sns {
    // -- platform applications ------------------------------------------------

    pub fn create_platform_application(
        &self,
        name: &str,
        platform: &str,
        attrs: BTreeMap<String, String>,
    ) -> Result<String, AwsError> {
        let name_ok = !name.is_empty()
            && name.len() <= 256
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(invalid_parameter(
                "Invalid parameter: Name Reason: must be 1 to 256 alphanumeric characters, hyphens, underscores or periods",
            ));
        }
        if !PLATFORMS.contains(&platform) {
            return Err(invalid_parameter(format!(
                "Invalid parameter: Platform Reason: {platform} is not supported"
            )));
        }
        validate_app_attrs(&attrs)?;
        if attrs.get("PlatformCredential").is_none_or(|c| c.is_empty()) {
            return Err(invalid_parameter(
                "Invalid parameter: Attributes Reason: PlatformCredential attribute is required",
            ));
        }
        let arn = format!(
            "arn:aws:sns:{}:{}:app/{platform}/{name}",
            self.region, self.account
        );
        let inner = self.lock();
        // Creating it again updates its attributes and answers the same ARN.
        let existing: Option<String> = inner
            .conn
            .query_row(
                "SELECT attrs FROM platform_apps WHERE arn = ?1",
                [&arn],
                |r| r.get(0),
            )
            .optional()
            .map_err(internal)?;
        let mut all = existing.as_deref().map(parse_map).unwrap_or_default();
        all.extend(attrs);
        inner
            .conn
            .execute(
                "INSERT INTO platform_apps(arn, name, platform, attrs) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(arn) DO UPDATE SET attrs = excluded.attrs",
                params![arn, name, platform, json_map(&all)],
            )
            .map_err(internal)?;
        tracing::info!(application = %arn, platform, "platform application created");
        Ok(arn)
    }

    fn app_attrs_raw(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        app_attrs_in(&self.lock().conn, arn)
    }

    pub fn platform_application_attributes(
        &self,
        arn: &str,
    ) -> Result<BTreeMap<String, String>, AwsError> {
        let raw = self.app_attrs_raw(arn)?;
        Ok(shown_app_attrs(&json_map(&raw)))
    }

    pub fn set_platform_application_attributes(
        &self,
        arn: &str,
        attrs: BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        validate_app_attrs(&attrs)?;
        let inner = self.lock();
        let mut all = app_attrs_in(&inner.conn, arn)?;
        for (k, v) in attrs {
            if v.is_empty() && !SECRET_APP_ATTRS.contains(&k.as_str()) {
                all.remove(&k);
            } else if v.is_empty() {
                return Err(invalid_parameter(format!(
                    "Invalid parameter: Attributes Reason: {k} must not be empty"
                )));
            } else {
                all.insert(k, v);
            }
        }
        inner
            .conn
            .execute(
                "UPDATE platform_apps SET attrs = ?2 WHERE arn = ?1",
                params![arn, json_map(&all)],
            )
            .map_err(internal)?;
        Ok(())
    }

    pub fn list_platform_applications(
        &self,
        next: Option<&str>,
    ) -> Result<(Vec<PlatformApp>, Option<String>), AwsError> {
        let inner = self.lock();
        let all: Vec<(String, String)> = inner
            .conn
            .prepare("SELECT arn, attrs FROM platform_apps ORDER BY arn")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(internal)?;
        let attrs: BTreeMap<String, String> = all.into_iter().collect();
        let (keys, next) = page(attrs.keys().cloned().collect(), next, 100)?;
        Ok((
            keys.into_iter()
                .map(|arn| PlatformApp {
                    attrs: shown_app_attrs(&attrs[&arn]),
                    arn,
                })
                .collect(),
            next,
        ))
    }

    /// Deletes the application and its endpoints; deleting a missing one succeeds.
    pub fn delete_platform_application(&self, arn: &str) -> Result<(), AwsError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction().map_err(internal)?;
        let n = tx
            .execute("DELETE FROM platform_apps WHERE arn = ?1", [arn])
            .map_err(internal)?;
        tx.execute("DELETE FROM endpoints WHERE app_arn = ?1", [arn])
            .map_err(internal)?;
        tx.commit().map_err(internal)?;
        if n > 0 {
            tracing::info!(application = %arn, "platform application deleted");
        }
        Ok(())
    }

    // -- endpoints ------------------------------------------------------------

    pub fn create_platform_endpoint(
        &self,
        app_arn: &str,
        token: &str,
        custom_user_data: Option<&str>,
        mut attrs: BTreeMap<String, String>,
    ) -> Result<String, AwsError> {
        if token.is_empty() {
            return Err(invalid_parameter(
                "Invalid parameter: Token Reason: Token must not be empty",
            ));
        }
        if let Some(c) = custom_user_data {
            attrs.insert("CustomUserData".into(), c.to_string());
        }
        attrs.insert("Token".into(), token.to_string());
        attrs
            .entry("Enabled".into())
            .or_insert_with(|| "true".into());
        validate_endpoint_attrs(&attrs)?;
        let (platform, app_name) = app_parts(app_arn)
            .ok_or_else(|| invalid_parameter("Invalid parameter: PlatformApplicationArn"))?;
        let (platform, app_name) = (platform.to_string(), app_name.to_string());
        let mut inner = self.lock();
        let tx = inner.conn.transaction().map_err(internal)?;
        app_attrs_in(&tx, app_arn)?;
        let existing: Option<(String, String)> = tx
            .query_row(
                "SELECT arn, attrs FROM endpoints WHERE app_arn = ?1 AND token = ?2",
                params![app_arn, token],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(internal)?;
        if let Some((arn, stored)) = existing {
            // Same token: the same endpoint when the attributes match; a request
            // without CustomUserData does not compare it, `Enabled` defaults to true
            // (so re-registering a disabled endpoint's token conflicts, as in AWS).
            let mut stored = parse_map(&stored);
            if !attrs.contains_key("CustomUserData") {
                stored.remove("CustomUserData");
            }
            if stored == attrs {
                return Ok(arn);
            }
            return Err(invalid_parameter(format!(
                "Invalid parameter: Token Reason: Endpoint {arn} already exists with the same Token, but different attributes."
            )));
        }
        let arn = format!(
            "arn:aws:sns:{}:{}:endpoint/{platform}/{app_name}/{}",
            self.region,
            self.account,
            uuid::Uuid::new_v4()
        );
        tx.execute(
            "INSERT INTO endpoints(arn, app_arn, token, attrs) VALUES (?1, ?2, ?3, ?4)",
            params![arn, app_arn, token, json_map(&attrs)],
        )
        .map_err(internal)?;
        tx.commit().map_err(internal)?;
        tracing::info!(endpoint = %arn, "platform endpoint created");
        Ok(arn)
    }

    /// An endpoint's attributes, `None` when it does not exist.
    pub fn endpoint(&self, arn: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
        endpoint_in(&self.lock().conn, arn)
    }

    pub fn endpoint_attributes(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        self.endpoint(arn)?
            .ok_or_else(|| not_found("Endpoint does not exist"))
    }

    pub fn set_endpoint_attributes(
        &self,
        arn: &str,
        attrs: BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        validate_endpoint_attrs(&attrs)?;
        let inner = self.lock();
        let mut all =
            endpoint_in(&inner.conn, arn)?.ok_or_else(|| not_found("Endpoint does not exist"))?;
        all.extend(attrs);
        let token = all.get("Token").cloned().unwrap_or_default();
        inner
            .conn
            .execute(
                "UPDATE endpoints SET attrs = ?2, token = ?3 WHERE arn = ?1",
                params![arn, json_map(&all), token],
            )
            .map_err(internal)?;
        Ok(())
    }

    pub fn list_endpoints(
        &self,
        app_arn: &str,
        next: Option<&str>,
    ) -> Result<(Vec<PlatformApp>, Option<String>), AwsError> {
        self.app_attrs_raw(app_arn)?;
        let inner = self.lock();
        let all: BTreeMap<String, String> = inner
            .conn
            .prepare("SELECT arn, attrs FROM endpoints WHERE app_arn = ?1")
            .and_then(|mut st| {
                st.query_map([app_arn], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<BTreeMap<String, String>>>()
            })
            .map_err(internal)?;
        let (keys, next) = page(all.keys().cloned().collect(), next, 100)?;
        Ok((
            keys.into_iter()
                .map(|arn| PlatformApp {
                    attrs: parse_map(&all[&arn]),
                    arn,
                })
                .collect(),
            next,
        ))
    }

    /// Deleting a missing endpoint succeeds, as in AWS.
    pub fn delete_endpoint(&self, arn: &str) -> Result<(), AwsError> {
        self.lock()
            .conn
            .execute("DELETE FROM endpoints WHERE arn = ?1", [arn])
            .map_err(internal)?;
        Ok(())
    }

    /// `Publish` with a `TargetArn` naming an endpoint: validated as a topic
    /// publish is, then recorded as an `application` delivery.
    pub fn publish_to_endpoint(&self, arn: &str, p: PublishInput) -> Result<String, AwsError> {
        let Some(attrs) = self.endpoint(arn)? else {
            return Err(not_found("Endpoint does not exist"));
        };
        let shell = Topic {
            arn: arn.to_string(),
            name: String::new(),
            attrs: BTreeMap::new(),
            tags: BTreeMap::new(),
        };
        self.validate_publish(&shell, &p)?;
        if attrs.get("Enabled").map(String::as_str) == Some("false") {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "EndpointDisabled",
                "Endpoint is disabled",
            ));
        }
        let platform = endpoint_platform(arn).unwrap_or("");
        let body = platform_body(&p.message, p.structure_json, platform);
        let id = uuid::Uuid::new_v4().to_string();
        self.record("application", arn, "", "", &id, &body)
            .map_err(internal)?;
        self.metrics
            .published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(id)
    }

    /// What an `application` subscription delivers to its endpoint: the
    /// platform's body, or `None` when the endpoint is gone or disabled (AWS
    /// drops those deliveries).
    pub fn application_body(
        &self,
        endpoint_arn: &str,
        msg: &StoredMessage,
    ) -> Result<Option<String>, AwsError> {
        let Some(attrs) = self.endpoint(endpoint_arn)? else {
            return Ok(None);
        };
        if attrs.get("Enabled").map(String::as_str) == Some("false") {
            return Ok(None);
        }
        let platform = endpoint_platform(endpoint_arn).unwrap_or("");
        Ok(Some(platform_body(
            &msg.message,
            msg.structure_json,
            platform,
        )))
    }

    // -- SMS ------------------------------------------------------------------

    pub fn sms_attributes(&self, names: &[String]) -> Result<BTreeMap<String, String>, AwsError> {
        let inner = self.lock();
        let all: BTreeMap<String, String> = inner
            .conn
            .prepare("SELECT name, value FROM sms_attributes")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<BTreeMap<String, String>>>()
            })
            .map_err(internal)?;
        Ok(all
            .into_iter()
            .filter(|(k, _)| names.is_empty() || names.contains(k))
            .collect())
    }

    pub fn set_sms_attributes(&self, attrs: BTreeMap<String, String>) -> Result<(), AwsError> {
        for (k, v) in &attrs {
            if !SMS_ATTRS.contains(&k.as_str()) {
                return Err(invalid_parameter(format!(
                    "Invalid parameter: {k} Reason: Unrecognized attribute name"
                )));
            }
            let ok = match k.as_str() {
                "DefaultSMSType" => matches!(v.as_str(), "Promotional" | "Transactional"),
                "MonthlySpendLimit" => v.parse::<u64>().is_ok(),
                "DeliveryStatusSuccessSamplingRate" => v.parse::<u32>().is_ok_and(|n| n <= 100),
                "DefaultSenderID" => {
                    (1..=11).contains(&v.len())
                        && v.chars().all(|c| c.is_ascii_alphanumeric())
                        && v.chars().any(|c| c.is_ascii_alphabetic())
                }
                _ => true,
            };
            if !ok {
                return Err(invalid_parameter(format!(
                    "Invalid parameter: {k} Reason: invalid value {v}"
                )));
            }
        }
        let mut inner = self.lock();
        let tx = inner.conn.transaction().map_err(internal)?;
        for (k, v) in &attrs {
            tx.execute(
                "INSERT INTO sms_attributes(name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![k, v],
            )
            .map_err(internal)?;
        }
        tx.commit().map_err(internal)?;
        Ok(())
    }

    pub fn is_opted_out(&self, phone: &str) -> Result<bool, AwsError> {
        check_phone(phone)?;
        self.opted_out(phone).map_err(internal)
    }

    pub(crate) fn opted_out(&self, phone: &str) -> rusqlite::Result<bool> {
        self.lock()
            .conn
            .query_row("SELECT 1 FROM opted_out WHERE phone = ?1", [phone], |_| {
                Ok(())
            })
            .optional()
            .map(|r| r.is_some())
    }

    pub fn list_opted_out(
        &self,
        next: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), AwsError> {
        let inner = self.lock();
        let all: Vec<String> = inner
            .conn
            .prepare("SELECT phone FROM opted_out ORDER BY phone")
            .and_then(|mut st| {
                st.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(internal)?;
        page(all, next, 100)
    }

    /// Opt a number out (what a "STOP" reply does in AWS; the admin surface's
    /// `POST sms/opt-out`) or back in (`OptInPhoneNumber`).
    pub fn set_opted_out(&self, phone: &str, out: bool) -> Result<(), AwsError> {
        check_phone(phone)?;
        let inner = self.lock();
        if out {
            inner.conn.execute(
                "INSERT OR IGNORE INTO opted_out(phone, at_ms) VALUES (?1, ?2)",
                params![phone, now_ms()],
            )
        } else {
            inner
                .conn
                .execute("DELETE FROM opted_out WHERE phone = ?1", [phone])
        }
        .map_err(internal)?;
        tracing::info!(opted_out = out, "SMS opt-out changed");
        Ok(())
    }

    // -- the SMS sandbox --------------------------------------------------------

    fn sandbox_phone(phone: &str) -> Result<(), AwsError> {
        if phone.len() <= 20 && valid_e164(phone) {
            Ok(())
        } else {
            Err(invalid_parameter(
                "Invalid parameter: PhoneNumber Reason: input incorrectly formatted",
            ))
        }
    }

    /// Add a destination number: a one-time password is "sent" (recorded as an
    /// `sms` delivery) and the number is `Pending` until verified.
    pub fn create_sandbox_number(&self, phone: &str, language: &str) -> Result<(), AwsError> {
        Self::sandbox_phone(phone)?;
        const LANGS: &[&str] = &[
            "en-US", "en-GB", "es-419", "es-ES", "de-DE", "fr-CA", "fr-FR", "it-IT", "ja-JP",
            "pt-BR", "kr-KR", "zh-CN", "zh-TW",
        ];
        if !LANGS.contains(&language) {
            return Err(invalid_parameter(
                "Invalid parameter: LanguageCode Reason: unsupported language code",
            ));
        }
        if self.opted_out(phone).map_err(internal)? {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "OptedOut",
                "The phone number has opted out of receiving SMS messages",
            ));
        }
        let n = u32::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..4]
                .try_into()
                .unwrap_or([0; 4]),
        );
        let otp = format!("{:06}", n % 1_000_000);
        let mut inner = self.lock();
        let tx = inner.conn.transaction().map_err(internal)?;
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM sms_sandbox WHERE phone = ?1",
                [phone],
                |r| r.get(0),
            )
            .optional()
            .map_err(internal)?;
        if status.as_deref() == Some("Verified") {
            return Err(user_error("The phone number is already verified"));
        }
        let now = now_ms();
        tx.execute(
            "INSERT INTO sms_sandbox(phone, status, otp, language, at_ms) VALUES (?1, 'Pending', ?2, ?3, ?4)
             ON CONFLICT(phone) DO UPDATE SET otp = excluded.otp, language = excluded.language, at_ms = excluded.at_ms",
            params![phone, otp, language, now],
        )
        .map_err(internal)?;
        // The one-time password "sent": recorded with the row, in one transaction.
        tx.execute(
            "INSERT INTO recorded(protocol, endpoint, sub_arn, topic_arn, message_id, body, at_ms)
             VALUES ('sms', ?1, '', '', ?2, ?3, ?4)",
            params![
                phone,
                uuid::Uuid::new_v4().to_string(),
                format!("Your Amazon SNS verification code is: {otp}"),
                now
            ],
        )
        .map_err(internal)?;
        tx.commit().map_err(internal)?;
        Ok(())
    }

    pub fn verify_sandbox_number(&self, phone: &str, otp: &str) -> Result<(), AwsError> {
        Self::sandbox_phone(phone)?;
        if !(5..=8).contains(&otp.len()) || !otp.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid_parameter(
                "Invalid parameter: OneTimePassword Reason: must be 5 to 8 digits",
            ));
        }
        let inner = self.lock();
        let row: Option<(String, String)> = inner
            .conn
            .query_row(
                "SELECT status, otp FROM sms_sandbox WHERE phone = ?1",
                [phone],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(internal)?;
        let Some((status, expected)) = row else {
            return Err(resource_not_found(
                "The phone number does not exist in the SMS sandbox",
            ));
        };
        if status == "Verified" {
            return Ok(());
        }
        if otp != expected {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "VerificationException",
                "Invalid one-time password",
            )
            .with_field("Status", "Pending"));
        }
        inner
            .conn
            .execute(
                "UPDATE sms_sandbox SET status = 'Verified' WHERE phone = ?1",
                [phone],
            )
            .map_err(internal)?;
        Ok(())
    }

    pub fn delete_sandbox_number(&self, phone: &str) -> Result<(), AwsError> {
        Self::sandbox_phone(phone)?;
        let n = self
            .lock()
            .conn
            .execute("DELETE FROM sms_sandbox WHERE phone = ?1", [phone])
            .map_err(internal)?;
        if n == 0 {
            return Err(resource_not_found(
                "The phone number does not exist in the SMS sandbox",
            ));
        }
        Ok(())
    }

    pub fn list_sandbox_numbers(
        &self,
        next: Option<&str>,
        max: usize,
    ) -> Result<(Vec<SandboxNumber>, Option<String>), AwsError> {
        let inner = self.lock();
        let all: BTreeMap<String, String> = inner
            .conn
            .prepare("SELECT phone, status FROM sms_sandbox")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<BTreeMap<String, String>>>()
            })
            .map_err(internal)?;
        let (keys, next) = page(all.keys().cloned().collect(), next, max)?;
        Ok((
            keys.into_iter()
                .map(|k| {
                    let s = all[&k].clone();
                    (k, s)
                })
                .collect(),
            next,
        ))
    }

    // -- data protection --------------------------------------------------------

    pub fn data_protection_policy(&self, arn: &str) -> Result<String, AwsError> {
        let inner = self.lock();
        let t = inner
            .topics
            .get(arn)
            .ok_or_else(|| not_found("Topic does not exist"))?;
        Ok(t.attrs
            .get("DataProtectionPolicy")
            .cloned()
            .unwrap_or_default())
    }

    pub fn put_data_protection_policy(&self, arn: &str, policy: &str) -> Result<(), AwsError> {
        if serde_json::from_str::<Value>(policy)
            .ok()
            .is_none_or(|v| !v.is_object())
        {
            return Err(invalid_parameter(
                "Invalid parameter: DataProtectionPolicy Reason: failed to parse JSON",
            ));
        }
        self.set_topic_attribute(arn, "DataProtectionPolicy", policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_bodies_pick_the_platform_then_default() {
        let m = r#"{"default":"d","GCM":"{\"notification\":{\"title\":\"t\"}}","APNS":"a"}"#;
        assert_eq!(
            platform_body(m, true, "GCM"),
            r#"{"notification":{"title":"t"}}"#
        );
        assert_eq!(platform_body(m, true, "APNS"), "a");
        assert_eq!(platform_body(m, true, "WNS"), "d");
        assert_eq!(platform_body(m, false, "GCM"), m);
    }

    #[test]
    fn arns_are_parsed() {
        assert_eq!(
            app_parts("arn:aws:sns:us-east-1:000000000000:app/GCM/my-app"),
            Some(("GCM", "my-app"))
        );
        assert_eq!(app_parts("arn:aws:sns:us-east-1:000000000000:topic"), None);
        assert_eq!(
            endpoint_platform("arn:aws:sns:us-east-1:000000000000:endpoint/APNS/app/123"),
            Some("APNS")
        );
        assert!(valid_e164("+15555550100"));
        assert!(!valid_e164("15555550100"));
        assert!(!valid_e164("+1555abc0100"));
    }
}
