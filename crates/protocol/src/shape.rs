//! A small description of an operation's input or output shape: just what the
//! XML-ish protocols cannot tell from the data alone — which members are lists
//! or maps, how they are spelled on the wire (`member`/`entry` wrappers or
//! flattened, `locationName`s), and which scalars are numbers or booleans.
//! The botocore model decides all of it; a service writes (or generates) one
//! `static` per operation:
//!
//! ```
//! use nimbus_protocol::{Member, Shape};
//!
//! // SQS SendMessage (awsQuery): `MessageAttribute.1.Name=…`,
//! // `MessageAttribute.1.Value.StringValue=…`, `DelaySeconds=5`.
//! static MESSAGE_ATTRIBUTE_VALUE: Shape = Shape::structure(&[
//!     Member::new("StringValue", &Shape::String),
//!     Member::new("DataType", &Shape::String),
//!     Member::new("StringListValues", &Shape::flat_list(&Shape::String))
//!         .wire("StringListValue"),
//! ]);
//! static SEND_MESSAGE: Shape = Shape::structure(&[
//!     Member::new("QueueUrl", &Shape::String),
//!     Member::new("MessageBody", &Shape::String),
//!     Member::new("DelaySeconds", &Shape::Integer),
//!     Member::new(
//!         "MessageAttributes",
//!         &Shape::flat_map("Name", "Value", &MESSAGE_ATTRIBUTE_VALUE),
//!     )
//!     .wire("MessageAttribute"),
//! ]);
//! ```
//!
//! Members a shape does not list are still decoded when they are plain
//! `Key=value` strings, so a service need only describe what is not a string.

/// One member of a structure.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// The member's name in the model, and its key in the decoded JSON value
    /// (what the service's serde type reads).
    pub name: &'static str,
    /// The member's name on the wire (its `locationName`; often `name`).
    pub wire: &'static str,
    pub shape: &'static Shape,
}

impl Member {
    /// A member spelled on the wire as in the model.
    pub const fn new(name: &'static str, shape: &'static Shape) -> Self {
        Self {
            name,
            wire: name,
            shape,
        }
    }

    /// The member's wire name (`locationName`) where it differs.
    pub const fn wire(self, wire: &'static str) -> Self {
        Self { wire, ..self }
    }
}

/// The shape of a value.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Text, kept as a JSON string (also blobs, base64, and timestamps, which
    /// the service's serde type parses).
    String,
    /// An integer or long: decoded to a JSON number.
    Integer,
    /// A float or double: decoded to a JSON number.
    Float,
    /// `true`/`false`: decoded to a JSON bool.
    Boolean,
    Structure(&'static [Member]),
    List {
        member: &'static Shape,
        /// The element name of a non-flattened list's items (`member`, or the
        /// member's `locationName`).
        member_name: &'static str,
        /// Items are repeated under the list's own name, without a wrapper.
        flattened: bool,
    },
    Map {
        /// Key and value element names (`key`/`value`, or `Name`/`Value`).
        key: &'static str,
        value: &'static str,
        value_shape: &'static Shape,
        /// Entries are repeated under the map's own name, without `entry`.
        flattened: bool,
    },
}

impl Shape {
    pub const fn structure(members: &'static [Member]) -> Self {
        Shape::Structure(members)
    }

    /// A list with the default `member` wrapper: `Name.member.1=…`,
    /// `<Name><member>…</member></Name>`.
    pub const fn list(member: &'static Shape) -> Self {
        Shape::List {
            member,
            member_name: "member",
            flattened: false,
        }
    }

    /// A non-flattened list whose items have their own element name.
    pub const fn list_named(member_name: &'static str, member: &'static Shape) -> Self {
        Shape::List {
            member,
            member_name,
            flattened: false,
        }
    }

    /// A flattened list: `Name.1=…`, `<Name>…</Name><Name>…</Name>`.
    pub const fn flat_list(member: &'static Shape) -> Self {
        Shape::List {
            member,
            member_name: "member",
            flattened: true,
        }
    }

    /// A map with the default spelling: `Name.entry.1.key=…&Name.entry.1.value=…`.
    pub const fn map(value_shape: &'static Shape) -> Self {
        Shape::Map {
            key: "key",
            value: "value",
            value_shape,
            flattened: false,
        }
    }

    /// A flattened map with its own key/value names: SQS's
    /// `Attribute.1.Name=…&Attribute.1.Value=…`.
    pub const fn flat_map(
        key: &'static str,
        value: &'static str,
        value_shape: &'static Shape,
    ) -> Self {
        Shape::Map {
            key,
            value,
            value_shape,
            flattened: true,
        }
    }

    /// The member of a structure shape, by model name.
    pub(crate) fn member(&self, name: &str) -> Option<&Member> {
        match self {
            Shape::Structure(members) => members.iter().find(|m| m.name == name),
            _ => None,
        }
    }
}
