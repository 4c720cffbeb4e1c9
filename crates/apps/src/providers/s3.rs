//! `AWS::S3::Bucket` and `AWS::S3::BucketPolicy`, through S3's REST (XML) API.
//!
//! A bucket's sub-configurations (versioning, CORS, lifecycle, tags,
//! notifications) are each one S3 call; an update re-puts the ones that changed
//! and deletes the ones the template no longer sets. A bucket that still holds
//! objects cannot be deleted — S3 answers `BucketNotEmpty`, and so does
//! CloudFormation's delete of it (`DeletionPolicy: Retain` keeps it instead).

use super::{attrs, invalid, s, scalar, tag_map, Cx, Made, ProviderError, R};
use crate::model::ResourceRow;
use bytes::Bytes;
use http::Method;
use serde_json::{Map, Value};

/// `&`, `<`, `>`, quotes escaped for XML text.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

fn el(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", esc(text))
}

fn list<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

fn bucket_made(cx: &Cx<'_>, name: &str) -> Made {
    let r = &cx.services.region;
    Made {
        physical_id: name.to_string(),
        ref_value: name.into(),
        attributes: attrs(&[
            ("Arn", format!("arn:aws:s3:::{name}").into()),
            ("DomainName", format!("{name}.s3.amazonaws.com").into()),
            (
                "DualStackDomainName",
                format!("{name}.s3.dualstack.{r}.amazonaws.com").into(),
            ),
            (
                "RegionalDomainName",
                format!("{name}.s3.{r}.amazonaws.com").into(),
            ),
            (
                "WebsiteURL",
                format!("http://{name}.s3-website-{r}.amazonaws.com").into(),
            ),
        ]),
    }
}

async fn call(
    cx: &Cx<'_>,
    op: &str,
    method: Method,
    path: &str,
    body: Option<String>,
) -> R<(http::HeaderMap, Bytes)> {
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("content-type", "application/xml")]
    } else {
        &[]
    };
    Ok(cx
        .services
        .rest(
            "s3",
            op,
            method,
            path,
            headers,
            Bytes::from(body.unwrap_or_default()),
        )
        .await?)
}

async fn exists(cx: &Cx<'_>, name: &str) -> R<bool> {
    match call(cx, "HeadBucket", Method::HEAD, &format!("/{name}"), None).await {
        Ok(_) => Ok(true),
        Err(ProviderError::Call(e)) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// `VersioningConfiguration` → S3's XML.
fn versioning_xml(v: &Value) -> Option<String> {
    let status = s(v, "Status")?;
    Some(format!(
        "<VersioningConfiguration xmlns=\"{NS}\">{}</VersioningConfiguration>",
        el("Status", status)
    ))
}

/// `CorsConfiguration` → S3's XML.
fn cors_xml(v: &Value) -> String {
    let mut x = format!("<CORSConfiguration xmlns=\"{NS}\">");
    for r in list(v, "CorsRules") {
        x.push_str("<CORSRule>");
        if let Some(id) = s(r, "Id") {
            x.push_str(&el("ID", id));
        }
        for (k, e) in [
            ("AllowedHeaders", "AllowedHeader"),
            ("AllowedMethods", "AllowedMethod"),
            ("AllowedOrigins", "AllowedOrigin"),
            ("ExposedHeaders", "ExposeHeader"),
        ] {
            for item in list(r, k).filter_map(scalar) {
                x.push_str(&el(e, &item));
            }
        }
        if let Some(m) = r.get("MaxAge").and_then(scalar) {
            x.push_str(&el("MaxAgeSeconds", &m));
        }
        x.push_str("</CORSRule>");
    }
    x.push_str("</CORSConfiguration>");
    x
}

/// `LifecycleConfiguration` → S3's XML.
fn lifecycle_xml(v: &Value) -> String {
    let mut x = format!("<LifecycleConfiguration xmlns=\"{NS}\">");
    for (i, r) in list(v, "Rules").enumerate() {
        x.push_str("<Rule>");
        let id = s(r, "Id")
            .map(str::to_string)
            .unwrap_or_else(|| format!("rule-{}", i + 1));
        x.push_str(&el("ID", &id));
        let prefix = s(r, "Prefix");
        let tags: Vec<&Value> = list(r, "TagFilters").collect();
        x.push_str("<Filter>");
        let tag_xml = |t: &Value| {
            format!(
                "<Tag>{}{}</Tag>",
                el("Key", s(t, "Key").unwrap_or("")),
                el(
                    "Value",
                    &t.get("Value").and_then(scalar).unwrap_or_default()
                )
            )
        };
        if tags.is_empty() {
            if let Some(p) = prefix {
                x.push_str(&el("Prefix", p));
            }
        } else if tags.len() == 1 && prefix.is_none() {
            x.push_str(&tag_xml(tags[0]));
        } else {
            x.push_str("<And>");
            if let Some(p) = prefix {
                x.push_str(&el("Prefix", p));
            }
            for t in tags {
                x.push_str(&tag_xml(t));
            }
            x.push_str("</And>");
        }
        x.push_str("</Filter>");
        x.push_str(&el("Status", s(r, "Status").unwrap_or("Enabled")));
        let days = r.get("ExpirationInDays").and_then(scalar);
        let date = s(r, "ExpirationDate");
        if days.is_some() || date.is_some() {
            x.push_str("<Expiration>");
            if let Some(d) = days {
                x.push_str(&el("Days", &d));
            }
            if let Some(d) = date {
                x.push_str(&el("Date", d));
            }
            x.push_str("</Expiration>");
        }
        let nc = r
            .get("NoncurrentVersionExpirationInDays")
            .and_then(scalar)
            .or_else(|| {
                r.get("NoncurrentVersionExpiration")
                    .and_then(|n| n.get("NoncurrentDays"))
                    .and_then(scalar)
            });
        if let Some(d) = nc {
            x.push_str(&format!(
                "<NoncurrentVersionExpiration>{}</NoncurrentVersionExpiration>",
                el("NoncurrentDays", &d)
            ));
        }
        if let Some(d) = r
            .get("AbortIncompleteMultipartUpload")
            .and_then(|a| a.get("DaysAfterInitiation"))
            .and_then(scalar)
        {
            x.push_str(&format!(
                "<AbortIncompleteMultipartUpload>{}</AbortIncompleteMultipartUpload>",
                el("DaysAfterInitiation", &d)
            ));
        }
        x.push_str("</Rule>");
    }
    x.push_str("</LifecycleConfiguration>");
    x
}

fn tagging_xml(tags: &Map<String, Value>) -> String {
    let mut x = format!("<Tagging xmlns=\"{NS}\"><TagSet>");
    for (k, v) in tags {
        x.push_str(&format!(
            "<Tag>{}{}</Tag>",
            el("Key", k),
            el("Value", v.as_str().unwrap_or(""))
        ));
    }
    x.push_str("</TagSet></Tagging>");
    x
}

/// `NotificationConfiguration` → S3's XML (Lambda targets are S3's
/// `CloudFunctionConfiguration`; `EventBridgeConfiguration.EventBridgeEnabled`
/// turns on delivery to the default bus).
pub(crate) fn notification_xml(v: &Value) -> String {
    let mut x = format!("<NotificationConfiguration xmlns=\"{NS}\">");
    for (key, elem, prop, target) in [
        (
            "TopicConfigurations",
            "TopicConfiguration",
            "Topic",
            "Topic",
        ),
        (
            "QueueConfigurations",
            "QueueConfiguration",
            "Queue",
            "Queue",
        ),
        (
            "LambdaConfigurations",
            "CloudFunctionConfiguration",
            "Function",
            "CloudFunction",
        ),
    ] {
        for c in list(v, key) {
            x.push_str(&format!("<{elem}>"));
            if let Some(id) = s(c, "Id") {
                x.push_str(&el("Id", id));
            }
            x.push_str(&el(target, s(c, prop).unwrap_or("")));
            x.push_str(&el("Event", s(c, "Event").unwrap_or("")));
            let rules: Vec<&Value> = c
                .get("Filter")
                .and_then(|f| f.get("S3Key"))
                .map(|k| list(k, "Rules").collect())
                .unwrap_or_default();
            if !rules.is_empty() {
                x.push_str("<Filter><S3Key>");
                for r in rules {
                    x.push_str(&format!(
                        "<FilterRule>{}{}</FilterRule>",
                        el("Name", s(r, "Name").unwrap_or("")),
                        el("Value", s(r, "Value").unwrap_or(""))
                    ));
                }
                x.push_str("</S3Key></Filter>");
            }
            x.push_str(&format!("</{elem}>"));
        }
    }
    let eb = v
        .get("EventBridgeConfiguration")
        .and_then(|e| e.get("EventBridgeEnabled"))
        .and_then(scalar);
    if eb.as_deref() == Some("true") {
        x.push_str("<EventBridgeConfiguration></EventBridgeConfiguration>");
    }
    x.push_str("</NotificationConfiguration>");
    x
}

/// Put (or, when the template does not set it and `clear`, delete) each
/// sub-configuration whose value differs from `old`.
async fn configure(cx: &Cx<'_>, name: &str, props: &Value, old: Option<&Value>) -> R<()> {
    let changed = |k: &str| old.is_none_or(|o| o.get(k) != props.get(k));
    let path = |q: &str| format!("/{name}?{q}");
    if changed("VersioningConfiguration") {
        match props
            .get("VersioningConfiguration")
            .and_then(versioning_xml)
        {
            Some(x) => {
                call(
                    cx,
                    "PutBucketVersioning",
                    Method::PUT,
                    &path("versioning"),
                    Some(x),
                )
                .await?;
            }
            // A versioned bucket cannot go back to unversioned: suspended.
            None if old.is_some() => {
                let x =
                    versioning_xml(&serde_json::json!({"Status": "Suspended"})).expect("a status");
                call(
                    cx,
                    "PutBucketVersioning",
                    Method::PUT,
                    &path("versioning"),
                    Some(x),
                )
                .await?;
            }
            None => {}
        }
    }
    if changed("CorsConfiguration") {
        match props.get("CorsConfiguration") {
            Some(c) => {
                call(
                    cx,
                    "PutBucketCors",
                    Method::PUT,
                    &path("cors"),
                    Some(cors_xml(c)),
                )
                .await?;
            }
            None if old.is_some() => {
                call(cx, "DeleteBucketCors", Method::DELETE, &path("cors"), None).await?;
            }
            None => {}
        }
    }
    if changed("LifecycleConfiguration") {
        match props.get("LifecycleConfiguration") {
            Some(c) => {
                call(
                    cx,
                    "PutBucketLifecycleConfiguration",
                    Method::PUT,
                    &path("lifecycle"),
                    Some(lifecycle_xml(c)),
                )
                .await?;
            }
            None if old.is_some() => {
                call(
                    cx,
                    "DeleteBucketLifecycle",
                    Method::DELETE,
                    &path("lifecycle"),
                    None,
                )
                .await?;
            }
            None => {}
        }
    }
    if changed("Tags") {
        let tags = tag_map(&props["Tags"]);
        if !tags.is_empty() {
            call(
                cx,
                "PutBucketTagging",
                Method::PUT,
                &path("tagging"),
                Some(tagging_xml(&tags)),
            )
            .await?;
        } else if old.is_some() {
            call(
                cx,
                "DeleteBucketTagging",
                Method::DELETE,
                &path("tagging"),
                None,
            )
            .await?;
        }
    }
    if changed("NotificationConfiguration")
        && (props.get("NotificationConfiguration").is_some() || old.is_some())
    {
        let x = notification_xml(
            props
                .get("NotificationConfiguration")
                .unwrap_or(&Value::Null),
        );
        call(
            cx,
            "PutBucketNotificationConfiguration",
            Method::PUT,
            &path("notification"),
            Some(x),
        )
        .await?;
    }
    Ok(())
}

pub async fn create_bucket(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let Some(name) = s(props, "BucketName") else {
        return invalid("AWS::S3::Bucket needs a BucketName");
    };
    // CreateBucket of a bucket the account owns succeeds in us-east-1: refuse
    // it here, so an undo never deletes a bucket the app did not create.
    if exists(cx, name).await? {
        return super::exists(format!("bucket {name} already exists"));
    }
    call(cx, "CreateBucket", Method::PUT, &format!("/{name}"), None).await?;
    configure(cx, name, props, None).await?;
    Ok(bucket_made(cx, name))
}

pub async fn update_bucket(cx: &Cx<'_>, row: &ResourceRow, props: &Value) -> R<Made> {
    configure(cx, &row.physical_id, props, Some(&row.properties)).await?;
    Ok(bucket_made(cx, &row.physical_id))
}

pub async fn delete_bucket(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    call(
        cx,
        "DeleteBucket",
        Method::DELETE,
        &format!("/{}", row.physical_id),
        None,
    )
    .await?;
    Ok(())
}

/// A create a crash interrupted: the planned bucket, if it exists and is empty
/// (a bucket with objects was not just created by this step).
pub async fn delete_planned_bucket(cx: &Cx<'_>, planned: &ResourceRow) -> R<()> {
    let Some(name) = s(&planned.properties, "BucketName") else {
        return Ok(());
    };
    let row = ResourceRow {
        physical_id: name.to_string(),
        ..planned.clone()
    };
    if exists(cx, name).await? && !has_objects(cx, &row).await? {
        delete_bucket(cx, &row).await?;
    }
    Ok(())
}

pub async fn has_objects(cx: &Cx<'_>, row: &ResourceRow) -> R<bool> {
    let (_, body) = call(
        cx,
        "ListObjectVersions",
        Method::GET,
        &format!("/{}?versions&max-keys=1", row.physical_id),
        None,
    )
    .await?;
    let x = String::from_utf8_lossy(&body);
    Ok(x.contains("<Version>") || x.contains("<DeleteMarker>"))
}

/// `AWS::S3::BucketPolicy`: the bucket's policy; its physical id is generated.
pub async fn put_bucket_policy(
    cx: &Cx<'_>,
    logical: &str,
    props: &Value,
    old: Option<&ResourceRow>,
) -> R<Made> {
    let Some(bucket) = s(props, "Bucket") else {
        return invalid("AWS::S3::BucketPolicy needs a Bucket");
    };
    let doc = super::policy_text(&props["PolicyDocument"]);
    cx.services
        .rest(
            "s3",
            "PutBucketPolicy",
            Method::PUT,
            &format!("/{bucket}?policy"),
            &[("content-type", "application/json")],
            Bytes::from(doc),
        )
        .await?;
    let id = old
        .map(|o| o.physical_id.clone())
        .unwrap_or_else(|| format!("{}-{logical}-{}", cx.app, crate::naming::random_suffix()));
    Ok(Made {
        physical_id: id.clone(),
        ref_value: id.into(),
        attributes: Map::new(),
    })
}

pub async fn delete_bucket_policy(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    let Some(bucket) = s(&row.properties, "Bucket") else {
        return Ok(());
    };
    call(
        cx,
        "DeleteBucketPolicy",
        Method::DELETE,
        &format!("/{bucket}?policy"),
        None,
    )
    .await?;
    Ok(())
}

// ---- Custom::S3: notifications on a bucket the app does not own -----------

/// The Framework's `Custom::S3` (a serverless.yml `s3` event with `existing:
/// true`): Lambda notifications for `FunctionName` added to the existing bucket
/// `BucketName`, beside whatever else it notifies. Each configuration's `Id`
/// starts with `<function>-nimbus-`, so an update or delete replaces or removes
/// only these. Physical id and `Ref`: `<bucket>|<function>`.
fn custom_parts(props: &Value) -> R<(&str, &str)> {
    match (s(props, "BucketName"), s(props, "FunctionName")) {
        (Some(b), Some(f)) => Ok((b, f)),
        _ => invalid("Custom::S3 needs BucketName and FunctionName"),
    }
}

fn custom_prefix(function: &str) -> String {
    format!("{function}-nimbus-")
}

/// The bucket's notification XML without this function's configurations, and
/// with `blocks` added.
fn splice(current: &str, prefix: &str, blocks: &str) -> String {
    let body_start = current
        .find("<NotificationConfiguration")
        .and_then(|i| current[i..].find('>').map(|j| i + j + 1));
    let mut inner = match body_start {
        // `<NotificationConfiguration …/>`: no configuration at all.
        Some(i) if current[..i].ends_with("/>") => String::new(),
        Some(i) => {
            let end = current
                .rfind("</NotificationConfiguration>")
                .unwrap_or(current.len());
            current[i..end].to_string()
        }
        None => String::new(),
    };
    const OPEN: &str = "<CloudFunctionConfiguration>";
    const CLOSE: &str = "</CloudFunctionConfiguration>";
    let mut kept = String::new();
    while let Some(a) = inner.find(OPEN) {
        let Some(b) = inner[a..].find(CLOSE).map(|b| a + b + CLOSE.len()) else {
            break;
        };
        let block = &inner[a..b];
        kept.push_str(&inner[..a]);
        let ours = crate::services::xml_text(block, "Id").is_some_and(|id| id.starts_with(prefix));
        if !ours {
            kept.push_str(block);
        }
        inner = inner[b..].to_string();
    }
    kept.push_str(&inner);
    format!("<NotificationConfiguration xmlns=\"{NS}\">{kept}{blocks}</NotificationConfiguration>")
}

fn custom_blocks(cx: &Cx<'_>, function: &str, props: &Value) -> String {
    let arn = cx.arn("lambda", &format!("function:{function}"));
    let mut x = String::new();
    for (i, c) in list(props, "BucketConfigs").enumerate() {
        x.push_str("<CloudFunctionConfiguration>");
        x.push_str(&el("Id", &format!("{}{}", custom_prefix(function), i + 1)));
        x.push_str(&el("CloudFunction", &arn));
        x.push_str(&el("Event", s(c, "Event").unwrap_or("s3:ObjectCreated:*")));
        let rules: Vec<(String, String)> = list(c, "Rules")
            .filter_map(Value::as_object)
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), scalar(v)?)))
            .collect();
        if !rules.is_empty() {
            x.push_str("<Filter><S3Key>");
            for (n, v) in rules {
                x.push_str(&format!(
                    "<FilterRule>{}{}</FilterRule>",
                    el("Name", &n),
                    el("Value", &v)
                ));
            }
            x.push_str("</S3Key></Filter>");
        }
        x.push_str("</CloudFunctionConfiguration>");
    }
    x
}

async fn put_custom(cx: &Cx<'_>, bucket: &str, function: &str, blocks: &str) -> R<()> {
    let (_, cur) = call(
        cx,
        "GetBucketNotificationConfiguration",
        Method::GET,
        &format!("/{bucket}?notification"),
        None,
    )
    .await?;
    let x = splice(
        &String::from_utf8_lossy(&cur),
        &custom_prefix(function),
        blocks,
    );
    call(
        cx,
        "PutBucketNotificationConfiguration",
        Method::PUT,
        &format!("/{bucket}?notification"),
        Some(x),
    )
    .await?;
    Ok(())
}

pub async fn put_custom_s3(cx: &Cx<'_>, props: &Value) -> R<Made> {
    let (bucket, function) = custom_parts(props)?;
    put_custom(cx, bucket, function, &custom_blocks(cx, function, props)).await?;
    let id = format!("{bucket}|{function}");
    Ok(Made {
        physical_id: id.clone(),
        ref_value: id.into(),
        attributes: Map::new(),
    })
}

pub async fn delete_custom_s3(cx: &Cx<'_>, row: &ResourceRow) -> R<()> {
    let (bucket, function) = custom_parts(&row.properties)?;
    put_custom(cx, bucket, function, "").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notifications_become_s3_xml() {
        let x = notification_xml(&json!({
            "LambdaConfigurations": [{"Event": "s3:ObjectCreated:*",
                "Function": "arn:aws:lambda:us-east-1:000000000000:function:f",
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "in/"},
                                                {"Name": "suffix", "Value": ".jpg"}]}}}],
            "QueueConfigurations": [{"Event": "s3:ObjectRemoved:*", "Queue": "arn:q"}],
            "EventBridgeConfiguration": {"EventBridgeEnabled": true}
        }));
        assert!(x.contains("<QueueConfiguration><Queue>arn:q</Queue><Event>s3:ObjectRemoved:*</Event></QueueConfiguration>"), "{x}");
        assert!(x.contains("<CloudFunctionConfiguration><CloudFunction>arn:aws:lambda:us-east-1:000000000000:function:f</CloudFunction><Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>prefix</Name><Value>in/</Value></FilterRule><FilterRule><Name>suffix</Name><Value>.jpg</Value></FilterRule></S3Key></Filter></CloudFunctionConfiguration>"), "{x}");
        assert!(x.contains("<EventBridgeConfiguration>"));
        assert!(!notification_xml(&json!({})).contains("EventBridge"));
    }

    #[test]
    fn custom_s3_keeps_the_other_notifications() {
        let cur = format!(
            "<?xml version=\"1.0\"?><NotificationConfiguration xmlns=\"{NS}\">\
             <QueueConfiguration><Id>q</Id><Queue>arn:q</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration>\
             <CloudFunctionConfiguration><Id>f-nimbus-1</Id><CloudFunction>arn:f</CloudFunction><Event>e</Event></CloudFunctionConfiguration>\
             <CloudFunctionConfiguration><Id>g-1</Id><CloudFunction>arn:g</CloudFunction><Event>e</Event></CloudFunctionConfiguration>\
             </NotificationConfiguration>"
        );
        let x = splice(&cur, "f-nimbus-", "<New/>");
        assert!(
            x.contains("<Id>q</Id>") && x.contains("<Id>g-1</Id>"),
            "{x}"
        );
        assert!(
            !x.contains("f-nimbus-1") && x.ends_with("<New/></NotificationConfiguration>"),
            "{x}"
        );
        let empty = format!("<NotificationConfiguration xmlns=\"{NS}\"/>");
        assert_eq!(
            splice(&empty, "f-nimbus-", "<New/>"),
            format!("<NotificationConfiguration xmlns=\"{NS}\"><New/></NotificationConfiguration>")
        );
    }

    #[test]
    fn lifecycle_and_cors_become_s3_xml() {
        let x = lifecycle_xml(&json!({"Rules": [
            {"Id": "tmp", "Prefix": "tmp/", "Status": "Enabled", "ExpirationInDays": 1},
            {"Status": "Enabled", "NoncurrentVersionExpirationInDays": 30,
             "TagFilters": [{"Key": "k", "Value": "v&w"}]}]}));
        assert!(x.contains("<Rule><ID>tmp</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"), "{x}");
        assert!(
            x.contains(
                "<ID>rule-2</ID><Filter><Tag><Key>k</Key><Value>v&amp;w</Value></Tag></Filter>"
            ),
            "{x}"
        );
        assert!(x.contains("<NoncurrentVersionExpiration><NoncurrentDays>30</NoncurrentDays>"));
        let c = cors_xml(&json!({"CorsRules": [{"AllowedMethods": ["GET", "PUT"],
            "AllowedOrigins": ["*"], "MaxAge": 300}]}));
        assert!(c.contains("<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedOrigin>*</AllowedOrigin><MaxAgeSeconds>300</MaxAgeSeconds></CORSRule>"), "{c}");
    }
}
