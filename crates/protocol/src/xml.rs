//! XML bodies, written and read with `quick-xml` (which does the escaping):
//!
//! * [`XmlWriter`], a small element writer, also able to write a
//!   `serde_json::Value` by a [`Shape`] (awsQuery answers, via
//!   [`crate::query_response`]);
//! * [`xml_document`] / [`xml_response`] for restXml (S3) bodies with their root
//!   element and namespace ([`S3_NAMESPACE`]), and [`to_xml`] for the same from
//!   a `serde` type (S3's lists are flattened, which is serde's natural form);
//! * [`decode_xml`], a request body (`CompleteMultipartUpload`, `Delete`, …)
//!   into a `serde` type, `MalformedXML` on bad input.

use crate::{AwsError, Member, Shape};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// `metadata.xmlNamespace` of S3.
pub const S3_NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Writes an XML document element by element into memory.
pub struct XmlWriter {
    w: quick_xml::Writer<Vec<u8>>,
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for XmlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmlWriter")
            .field("len", &self.w.get_ref().len())
            .finish()
    }
}

impl XmlWriter {
    /// A document starting with `<?xml version="1.0" encoding="UTF-8"?>`.
    pub fn new() -> Self {
        let mut w = Self {
            w: quick_xml::Writer::new(Vec::with_capacity(512)),
        };
        w.write(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        w
    }

    fn write(&mut self, event: Event<'_>) {
        // Writing into a Vec cannot fail.
        let _ = self.w.write_event(event);
    }

    /// `<name>`.
    pub fn start(&mut self, name: &str) -> &mut Self {
        self.write(Event::Start(BytesStart::new(name)));
        self
    }

    /// `<name xmlns="ns">`.
    pub fn start_ns(&mut self, name: &str, ns: &str) -> &mut Self {
        self.write(Event::Start(
            BytesStart::new(name).with_attributes([("xmlns", ns)]),
        ));
        self
    }

    /// `</name>`.
    pub fn end(&mut self, name: &str) -> &mut Self {
        self.write(Event::End(BytesEnd::new(name)));
        self
    }

    /// Escaped text.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.write(Event::Text(BytesText::new(text)));
        self
    }

    /// `<name>text</name>`.
    pub fn element(&mut self, name: &str, text: &str) -> &mut Self {
        self.start(name).text(text).end(name)
    }

    /// `<name>text</name>` if there is a text.
    pub fn element_opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.element(name, t);
        }
        self
    }

    /// `<name>children</name>`.
    pub fn nested(&mut self, name: &str, children: impl FnOnce(&mut XmlWriter)) -> &mut Self {
        self.start(name);
        children(self);
        self.end(name)
    }

    /// Write a value's members (not the value's own element): the fields of an
    /// object as child elements, spelled as `shape` says (see [`Self::value`]).
    pub fn members(&mut self, value: &Value, shape: Option<&Shape>) -> &mut Self {
        if let Value::Object(map) = value {
            if let Some(Shape::Structure(members)) = shape {
                for m in members.iter() {
                    if let Some(v) = map.get(m.name) {
                        self.member(m, v);
                    }
                }
                for (k, v) in map {
                    if !members.iter().any(|m| m.name == k) {
                        self.value(k, v, None);
                    }
                }
            } else {
                for (k, v) in map {
                    self.value(k, v, None);
                }
            }
        }
        self
    }

    fn member(&mut self, m: &Member, v: &Value) {
        self.value(m.wire, v, Some(m.shape));
    }

    /// Write `value` as the element `name`, by `shape`: a structure's members
    /// under their wire names, lists with `member` wrappers or flattened, maps
    /// as `entry`/`key`/`value` or flattened. Without a shape: objects nest,
    /// arrays use the awsQuery default (`<member>` items). `null` writes
    /// nothing; numbers and booleans as JSON writes them.
    pub fn value(&mut self, name: &str, value: &Value, shape: Option<&Shape>) -> &mut Self {
        match (value, shape) {
            (Value::Null, _) => {}
            (
                Value::Array(items),
                Some(Shape::List {
                    member,
                    member_name,
                    flattened,
                }),
            ) => {
                if *flattened {
                    for item in items {
                        self.value(name, item, Some(member));
                    }
                } else {
                    self.start(name);
                    for item in items {
                        self.value(member_name, item, Some(member));
                    }
                    self.end(name);
                }
            }
            (Value::Array(items), _) => {
                self.start(name);
                for item in items {
                    self.value("member", item, None);
                }
                self.end(name);
            }
            (
                Value::Object(map),
                Some(Shape::Map {
                    key,
                    value: value_name,
                    value_shape,
                    flattened,
                }),
            ) => {
                if !*flattened {
                    self.start(name);
                }
                for (k, v) in map {
                    let entry = if *flattened { name } else { "entry" };
                    self.start(entry);
                    self.element(key, k);
                    self.value(value_name, v, Some(value_shape));
                    self.end(entry);
                }
                if !*flattened {
                    self.end(name);
                }
            }
            (Value::Object(_), shape) => {
                self.start(name);
                self.members(value, shape);
                self.end(name);
            }
            (Value::String(s), _) => {
                self.element(name, s);
            }
            (other, _) => {
                self.element(name, &other.to_string());
            }
        }
        self
    }

    /// The document's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.w.into_inner()
    }
}

/// A whole document: `<?xml …?><root xmlns="ns">…</root>`.
pub fn xml_document(root: &str, ns: Option<&str>, body: impl FnOnce(&mut XmlWriter)) -> Vec<u8> {
    let mut w = XmlWriter::new();
    match ns {
        Some(ns) => w.start_ns(root, ns),
        None => w.start(root),
    };
    body(&mut w);
    w.end(root);
    w.finish()
}

/// An `application/xml` answer with `x-amz-request-id` (S3's request id
/// header) and `x-amzn-RequestId`.
pub fn xml_response(status: StatusCode, request_id: &str, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amz-request-id", v.clone());
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// A `serde` value as a document with root `root` in namespace `ns`, written by
/// quick-xml's serializer (struct fields become elements, `Vec` fields repeat
/// their element: S3's flattened lists; `#[serde(rename = "@attr")]` fields
/// become attributes).
pub fn to_xml<T: Serialize + ?Sized>(
    root: &str,
    ns: Option<&str>,
    value: &T,
) -> Result<Vec<u8>, AwsError> {
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let start = doc.len();
    let mut ser = quick_xml::se::Serializer::with_root(&mut doc, Some(root)).map_err(internal)?;
    ser.expand_empty_elements(true);
    value.serialize(ser).map_err(internal)?;
    if let Some(ns) = ns {
        // The serializer wrote `<root` first; the namespace goes right after.
        let at = start + 1 + root.len();
        if doc.get(start..at) == Some(&format!("<{root}")) {
            let escaped = quick_xml::escape::escape(ns);
            doc.insert_str(at, &format!(" xmlns=\"{escaped}\""));
        }
    }
    Ok(doc.into_bytes())
}

fn internal(e: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %e, "response not serializable as XML");
    AwsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "We encountered an internal error. Please try again.",
    )
}

/// S3's `MalformedXML`.
pub fn malformed_xml() -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published \
         schema",
    )
}

/// Decode an XML request body into `T` (quick-xml's serde: the root element is
/// `T`, child elements its fields, repeated elements a `Vec`). Not UTF-8, not
/// well-formed, empty, or not fitting `T`: S3's `MalformedXML` (400).
pub fn decode_xml<T: DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    let text = std::str::from_utf8(body).map_err(|_| malformed_xml())?;
    if text.trim().is_empty() {
        return Err(malformed_xml());
    }
    quick_xml::de::from_str(text).map_err(|e| {
        tracing::debug!(error = %e, "malformed XML request body");
        malformed_xml()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn writer_escapes_and_nests() {
        let doc = xml_document("ListAllMyBucketsResult", Some(S3_NAMESPACE), |w| {
            w.nested("Owner", |w| {
                w.element("ID", "nimbus");
            });
            w.nested("Buckets", |w| {
                w.nested("Bucket", |w| {
                    w.element("Name", "a<b>&\"c'");
                    w.element_opt("CreationDate", None);
                });
            });
        });
        assert_eq!(
            String::from_utf8(doc).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListAllMyBucketsResult \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>nimbus</ID></Owner>\
             <Buckets><Bucket><Name>a&lt;b&gt;&amp;&quot;c&apos;</Name></Bucket></Buckets>\
             </ListAllMyBucketsResult>"
        );
    }

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct ListBucketResult {
        name: String,
        key_count: u32,
        is_truncated: bool,
        contents: Vec<Object>,
        common_prefixes: Vec<Prefix>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Object {
        key: String,
        size: u64,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Prefix {
        prefix: String,
    }

    #[test]
    fn serde_types_write_s3_documents() {
        let v = ListBucketResult {
            name: "b".into(),
            key_count: 2,
            is_truncated: false,
            contents: vec![
                Object {
                    key: "a&b".into(),
                    size: 1,
                },
                Object {
                    key: "c".into(),
                    size: 0,
                },
            ],
            common_prefixes: vec![],
        };
        let doc =
            String::from_utf8(to_xml("ListBucketResult", Some(S3_NAMESPACE), &v).unwrap()).unwrap();
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>\
             <KeyCount>2</KeyCount><IsTruncated>false</IsTruncated>\
             <Contents><Key>a&amp;b</Key><Size>1</Size></Contents>\
             <Contents><Key>c</Key><Size>0</Size></Contents></ListBucketResult>"
        );
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct CompleteMultipartUpload {
        #[serde(rename = "Part", default)]
        parts: Vec<Part>,
    }
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Part {
        part_number: u32,
        #[serde(rename = "ETag")]
        etag: String,
        #[serde(rename = "ChecksumCRC32")]
        checksum_crc32: Option<String>,
    }

    #[test]
    fn request_bodies_decode_or_are_malformed_xml() {
        // As botocore sends it.
        let body = br#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>"e1"</ETag><PartNumber>1</PartNumber></Part><Part><ETag>&quot;e2&quot;</ETag><PartNumber>2</PartNumber><ChecksumCRC32>DUoRhQ==</ChecksumCRC32></Part></CompleteMultipartUpload>"#;
        let got: CompleteMultipartUpload = decode_xml(body).unwrap();
        assert_eq!(got.parts.len(), 2);
        assert_eq!(got.parts[0].etag, "\"e1\"");
        assert_eq!(got.parts[1].etag, "\"e2\"");
        assert_eq!(got.parts[1].checksum_crc32.as_deref(), Some("DUoRhQ=="));

        for bad in [
            &b""[..],
            b"<CompleteMultipartUpload><Part>",
            b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
            b"\xff\xfe",
            b"not xml at all",
        ] {
            let e = decode_xml::<CompleteMultipartUpload>(bad).unwrap_err();
            assert_eq!((e.status, e.code.as_ref()), (StatusCode::BAD_REQUEST, "MalformedXML"));
        }
    }

    static TAGS: Shape = Shape::list(&TAG);
    static TAG: Shape = Shape::structure(&[
        Member::new("Key", &Shape::String),
        Member::new("Value", &Shape::String),
    ]);
    static OUT: Shape = Shape::structure(&[
        Member::new("Tags", &TAGS),
        Member::new(
            "Attributes",
            &Shape::flat_map("Name", "Value", &Shape::String),
        )
        .wire("Attribute"),
        Member::new("Entries", &Shape::map(&Shape::Integer)),
        Member::new("Urls", &Shape::flat_list(&Shape::String)).wire("QueueUrl"),
    ]);

    #[test]
    fn values_are_written_by_their_shape() {
        let v = serde_json::json!({
            "Tags": [{"Key": "k", "Value": "v"}],
            "Attributes": {"A": "1"},
            "Entries": {"x": 2},
            "Urls": ["u1", "u2"],
            "Extra": true,
            "Missing": null,
        });
        let mut w = XmlWriter::new();
        w.members(&v, Some(&OUT));
        let doc = String::from_utf8(w.finish()).unwrap();
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Tags><member><Key>k</Key><Value>v</Value></member></Tags>\
             <Attribute><Name>A</Name><Value>1</Value></Attribute>\
             <Entries><entry><key>x</key><value>2</value></entry></Entries>\
             <QueueUrl>u1</QueueUrl><QueueUrl>u2</QueueUrl><Extra>true</Extra>"
        );
    }
}
