//! The operations: each takes the request's JSON and answers JSON or an
//! [`ApiError`] (DynamoDB's code and message). They run on a blocking thread; every
//! write is one SQLite transaction holding the item change, its index entries
//! and its stream record.

use crate::db::{
    finish_record, get_item, h32, parse_stored, row_key, IndexMeta, KeyAttr, Store, StoreError,
    StreamMeta, TableMeta, Tx,
};
use crate::expr::{
    apply_update, eval, parse_condition, parse_key_condition, parse_projection, parse_update,
    project, range_holds, touched_attributes, CmpOp, Cond, KeyCond, Operand, Params, Path,
    PathElem, RangeCond, SetValue, UpdateAction,
};
use crate::value::{item_from_json, item_size, item_to_json, AttrValue, Item, MAX_ITEM_SIZE};
use crate::Op;
use rusqlite::{params_from_iter, types::Value as SqlValue, Connection};
use serde_json::{json, Map, Value};

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Extra top-level fields (`CancellationReasons`, `Item`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "dynamodb store failure");
        ApiError::new(500, "InternalServerError", "Internal server error")
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from(e).into()
    }
}

pub fn validation(msg: impl Into<String>) -> ApiError {
    ApiError::new(400, "ValidationException", msg)
}

fn not_found() -> ApiError {
    ApiError::new(
        400,
        "ResourceNotFoundException",
        "Requested resource not found",
    )
}

fn cond_failed(old: Option<&Item>, req: &Value) -> ApiError {
    let mut e = ApiError::new(
        400,
        "ConditionalCheckFailedException",
        "The conditional request failed",
    );
    if req
        .get("ReturnValuesOnConditionCheckFailure")
        .and_then(Value::as_str)
        == Some("ALL_OLD")
    {
        if let Some(o) = old {
            e.extra.insert("Item".into(), item_to_json(o));
        }
    }
    e
}

type R = Result<Value, ApiError>;

/// Dispatch one implemented operation.
pub fn handle(store: &Store, op: Op, req: &Value, endpoint: &str) -> R {
    match op {
        Op::CreateTable => create_table(store, req),
        Op::DescribeTable => {
            let t = table_named(store, req)?;
            Ok(json!({"Table": describe(store, &t, "ACTIVE")?}))
        }
        Op::ListTables => list_tables(store, req),
        Op::DeleteTable => delete_table(store, req),
        Op::UpdateTable => update_table(store, req),
        Op::PutItem => put_item(store, req),
        Op::GetItem => get_item_op(store, req),
        Op::DeleteItem => delete_item(store, req),
        Op::UpdateItem => update_item(store, req),
        Op::Query => query(store, req, false),
        Op::Scan => query(store, req, true),
        Op::BatchGetItem => batch_get(store, req),
        Op::BatchWriteItem => batch_write(store, req),
        Op::TransactGetItems => transact_get(store, req),
        Op::TransactWriteItems => transact_write(store, req),
        Op::UpdateTimeToLive => update_ttl(store, req),
        Op::DescribeTimeToLive => {
            let t = table_named(store, req)?;
            Ok(json!({"TimeToLiveDescription": match &t.ttl_attr {
                Some(a) => json!({"TimeToLiveStatus": "ENABLED", "AttributeName": a}),
                None => json!({"TimeToLiveStatus": "DISABLED"}),
            }}))
        }
        Op::TagResource => tag_resource(store, req),
        Op::UntagResource => untag_resource(store, req),
        Op::ListTagsOfResource => list_tags(store, req),
        Op::DescribeLimits => Ok(json!({
            "AccountMaxReadCapacityUnits": 80000,
            "AccountMaxWriteCapacityUnits": 80000,
            "TableMaxReadCapacityUnits": 40000,
            "TableMaxWriteCapacityUnits": 40000,
        })),
        Op::ExecuteStatement | Op::BatchExecuteStatement | Op::ExecuteTransaction => {
            crate::partiql::handle(store, op, req)
        }
        Op::DescribeEndpoints => {
            let host = endpoint
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            Ok(json!({"Endpoints": [{"Address": host, "CachePeriodInMinutes": 1440}]}))
        }
        _ => Err(ApiError::new(
            501,
            "NotImplemented",
            format!(
                "Nimbus does not implement the dynamodb operation {} yet.",
                op.name()
            ),
        )),
    }
}

// ---- helpers ----------------------------------------------------------------

fn s<'a>(req: &'a Value, k: &str) -> Option<&'a str> {
    req.get(k).and_then(Value::as_str)
}

fn table_named(store: &Store, req: &Value) -> Result<std::sync::Arc<TableMeta>, ApiError> {
    let name = s(req, "TableName").unwrap_or_default();
    check_table_name(name)?;
    store.table(name).ok_or_else(|| {
        ApiError::new(
            400,
            "ResourceNotFoundException",
            format!("Requested resource not found: Table: {name} not found"),
        )
    })
}

fn table_for_item(store: &Store, name: &str) -> Result<std::sync::Arc<TableMeta>, ApiError> {
    check_table_name(name)?;
    store.table(name).ok_or_else(not_found)
}

fn check_table_name(name: &str) -> Result<(), ApiError> {
    if name.len() < 3 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must have length greater than or equal to 3"
        )));
    }
    if name.len() > 255 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must have length less than or equal to 255"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )));
    }
    Ok(())
}

fn parse_item_field(req: &Value, field: &str) -> Result<Item, ApiError> {
    match req.get(field) {
        Some(v) => item_from_json(v).map_err(validation),
        None => Err(validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ))),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// A `Key` parameter: exactly the table's key attributes with their types.
fn check_key(t: &TableMeta, key: &Item) -> Result<(), ApiError> {
    let names = t.key_names();
    let bad = || validation("The provided key element does not match the schema");
    if key.len() != names.len() {
        return Err(bad());
    }
    for ka in std::iter::once(&t.hash).chain(t.range.as_ref()) {
        match key.get(&ka.name) {
            Some(v) if v.type_name() == ka.ty => {
                check_key_value(&ka.name, v, ka == &t.hash)?;
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

fn check_key_value(name: &str, v: &AttrValue, hash: bool) -> Result<(), ApiError> {
    let empty = match v {
        AttrValue::S(s) => s.is_empty(),
        AttrValue::B(b) => b.is_empty(),
        _ => false,
    };
    if empty {
        return Err(validation(format!(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {name}"
        )));
    }
    let len = v.key_bytes().len();
    if hash && len > 2048 {
        return Err(validation(
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes",
        ));
    }
    if !hash && len > 1024 {
        return Err(validation(
            "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes",
        ));
    }
    Ok(())
}

/// A whole item to store: its key attributes present with the right types,
/// index keys well-typed, within 400 KB.
fn check_item(t: &TableMeta, item: &Item) -> Result<(), ApiError> {
    for ka in std::iter::once(&t.hash).chain(t.range.as_ref()) {
        match item.get(&ka.name) {
            None => {
                return Err(validation(format!(
                    "One or more parameter values were invalid: Missing the key {} in the item",
                    ka.name
                )))
            }
            Some(v) if v.type_name() != ka.ty => {
                return Err(validation(format!(
                    "One or more parameter values were invalid: Type mismatch for key {} expected: {} actual: {}",
                    ka.name,
                    ka.ty,
                    v.type_name()
                )))
            }
            Some(v) => check_key_value(&ka.name, v, ka == &t.hash)?,
        }
    }
    for ix in t.gsis.iter().chain(&t.lsis) {
        for ka in std::iter::once(&ix.hash).chain(ix.range.as_ref()) {
            if let Some(v) = item.get(&ka.name) {
                if v.type_name() != ka.ty {
                    return Err(validation(format!(
                        "One or more parameter values were invalid: Type mismatch for Index Key {} Expected: {} Actual: {} IndexName: {}",
                        ka.name, ka.ty, v.type_name(), ix.name
                    )));
                }
                let empty = matches!(v, AttrValue::S(s) if s.is_empty())
                    || matches!(v, AttrValue::B(b) if b.is_empty());
                if empty {
                    return Err(validation(format!(
                        "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty string value. IndexName: {}, IndexKey: {}",
                        ix.name, ka.name
                    )));
                }
            }
        }
    }
    if item_size(item) > MAX_ITEM_SIZE {
        return Err(validation(
            "Item size has exceeded the maximum allowed size",
        ));
    }
    Ok(())
}

/// Names and values given without any expression, or left unused by them.
fn check_params(req: &Value, params: &Params) -> Result<(), ApiError> {
    let any_expr = [
        "ConditionExpression",
        "UpdateExpression",
        "ProjectionExpression",
        "FilterExpression",
        "KeyConditionExpression",
    ]
    .iter()
    .any(|k| req.get(*k).is_some());
    if !any_expr {
        if req.get("ExpressionAttributeNames").is_some() {
            return Err(validation(
                "ExpressionAttributeNames can only be specified when using expressions",
            ));
        }
        if req.get("ExpressionAttributeValues").is_some() {
            return Err(validation(
                "ExpressionAttributeValues can only be specified when using expressions",
            ));
        }
    }
    params.check_unused().map_err(validation)
}

fn mixed(non_expr: &str, expr: &str) -> ApiError {
    validation(format!(
        "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {{{non_expr}}} Expression parameters: {{{expr}}}"
    ))
}

/// The condition of a write: `ConditionExpression` or legacy `Expected`.
fn write_condition(req: &Value, params: &mut Params) -> Result<Option<Cond>, ApiError> {
    let ce = s(req, "ConditionExpression");
    let expected = req.get("Expected").and_then(Value::as_object);
    match (ce, expected) {
        (Some(_), Some(_)) => Err(mixed("Expected", "ConditionExpression")),
        (Some(c), None) => Ok(Some(
            parse_condition(c, params, "ConditionExpression").map_err(validation)?,
        )),
        (None, Some(e)) => legacy_conditions(e, s(req, "ConditionalOperator"), true).map(Some),
        (None, None) => Ok(None),
    }
}

/// Legacy `Expected`/`QueryFilter`/`ScanFilter` to a condition.
fn legacy_conditions(
    m: &Map<String, Value>,
    op: Option<&str>,
    expected: bool,
) -> Result<Cond, ApiError> {
    let mut conds = Vec::new();
    for (name, spec) in m {
        let path: Path = vec![PathElem::Key(name.clone())];
        let p = || Operand::Path(path.clone());
        let list: Vec<AttrValue> = match spec.get("AttributeValueList").and_then(Value::as_array) {
            Some(l) => l
                .iter()
                .map(AttrValue::from_json)
                .collect::<Result<_, _>>()
                .map_err(validation)?,
            None => match spec.get("Value") {
                Some(v) if expected => vec![AttrValue::from_json(v).map_err(validation)?],
                _ => vec![],
            },
        };
        let cmp = spec.get("ComparisonOperator").and_then(Value::as_str);
        let arg = |i: usize| -> Result<Operand, ApiError> {
            list.get(i).cloned().map(Operand::Value).ok_or_else(|| {
                validation(format!(
                    "One or more parameter values were invalid: Invalid number of argument(s) for the {} ComparisonOperator",
                    cmp.unwrap_or("EQ")
                ))
            })
        };
        let c = match cmp {
            None => match spec.get("Exists").and_then(Value::as_bool) {
                Some(false) => Cond::NotExists(path.clone()),
                _ => Cond::Cmp(p(), CmpOp::Eq, arg(0)?),
            },
            Some("EQ") => Cond::Cmp(p(), CmpOp::Eq, arg(0)?),
            Some("NE") => Cond::Cmp(p(), CmpOp::Ne, arg(0)?),
            Some("LT") => Cond::Cmp(p(), CmpOp::Lt, arg(0)?),
            Some("LE") => Cond::Cmp(p(), CmpOp::Le, arg(0)?),
            Some("GT") => Cond::Cmp(p(), CmpOp::Gt, arg(0)?),
            Some("GE") => Cond::Cmp(p(), CmpOp::Ge, arg(0)?),
            Some("NOT_NULL") => Cond::Exists(path.clone()),
            Some("NULL") => Cond::NotExists(path.clone()),
            Some("CONTAINS") => Cond::Contains(p(), arg(0)?),
            Some("NOT_CONTAINS") => Cond::And(
                Box::new(Cond::Exists(path.clone())),
                Box::new(Cond::Not(Box::new(Cond::Contains(p(), arg(0)?)))),
            ),
            Some("BEGINS_WITH") => Cond::BeginsWith(p(), arg(0)?),
            Some("IN") => Cond::In(p(), list.iter().cloned().map(Operand::Value).collect()),
            Some("BETWEEN") => Cond::Between(p(), arg(0)?, arg(1)?),
            Some(other) => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{other}' at 'comparisonOperator' failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
                )))
            }
        };
        conds.push(c);
    }
    let or = op == Some("OR");
    let mut it = conds.into_iter();
    let Some(mut acc) = it.next() else {
        return Ok(Cond::Not(Box::new(Cond::Exists(vec![PathElem::Key(
            "\u{0}never".into(),
        )]))));
    };
    for c in it {
        acc = if or {
            Cond::Or(Box::new(acc), Box::new(c))
        } else {
            Cond::And(Box::new(acc), Box::new(c))
        };
    }
    Ok(acc)
}

/// The projection of a read: `ProjectionExpression` or legacy `AttributesToGet`.
fn read_projection(req: &Value, params: &mut Params) -> Result<Option<Vec<Path>>, ApiError> {
    let pe = s(req, "ProjectionExpression");
    let atg = req.get("AttributesToGet").and_then(Value::as_array);
    match (pe, atg) {
        (Some(_), Some(_)) => Err(mixed("AttributesToGet", "ProjectionExpression")),
        (Some(p), None) => Ok(Some(parse_projection(p, params).map_err(validation)?)),
        (None, Some(a)) => Ok(Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(|n| vec![PathElem::Key(n.to_string())])
                .collect(),
        )),
        (None, None) => Ok(None),
    }
}

fn return_values(req: &Value, allowed: &[&str]) -> Result<String, ApiError> {
    let rv = s(req, "ReturnValues").unwrap_or("NONE");
    if !allowed.contains(&rv) {
        return Err(validation("Return values set to invalid value"));
    }
    if let Some(r) = s(req, "ReturnValuesOnConditionCheckFailure") {
        if !["NONE", "ALL_OLD"].contains(&r) {
            return Err(validation(format!(
                "1 validation error detected: Value '{r}' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]"
            )));
        }
    }
    Ok(rv.to_string())
}

fn capacity(req: &Value, t: &TableMeta, units: f64) -> Option<Value> {
    match s(req, "ReturnConsumedCapacity") {
        Some("TOTAL") => Some(json!({"TableName": t.name, "CapacityUnits": units})),
        Some("INDEXES") => Some(json!({"TableName": t.name, "CapacityUnits": units,
            "Table": {"CapacityUnits": units}})),
        _ => None,
    }
}

fn write_units(size: usize) -> f64 {
    (size.max(1) as f64 / 1024.0).ceil()
}

fn read_units(size: usize, consistent: bool) -> f64 {
    let u = (size.max(1) as f64 / 4096.0).ceil();
    if consistent {
        u
    } else {
        u / 2.0
    }
}

// ---- control plane ----------------------------------------------------------

fn key_schema(
    v: Option<&Value>,
    defs: &[KeyAttr],
    what: &str,
) -> Result<(KeyAttr, Option<KeyAttr>), ApiError> {
    let arr = v.and_then(Value::as_array).ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{what}' failed to satisfy constraint: Member must not be null"
        ))
    })?;
    if arr.is_empty() || arr.len() > 2 {
        return Err(validation(format!(
            "1 validation error detected: Value '{}' at '{what}' failed to satisfy constraint: Member must have length less than or equal to 2",
            arr.len()
        )));
    }
    let mut hash = None;
    let mut range = None;
    for (i, k) in arr.iter().enumerate() {
        let name = s(k, "AttributeName").unwrap_or_default().to_string();
        let kt = s(k, "KeyType").unwrap_or_default();
        let ty = defs
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.ty.clone())
            .ok_or_else(|| {
                validation(format!(
                    "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{name}], AttributeDefinitions: [{}]",
                    defs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?;
        match (i, kt) {
            (0, "HASH") => hash = Some(KeyAttr { name, ty }),
            (1, "RANGE") => range = Some(KeyAttr { name, ty }),
            (_, "HASH" | "RANGE") => {
                return Err(validation(
                    "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
                ))
            }
            (_, other) => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{other}' at '{what}.{}.member.keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]",
                    i + 1
                )))
            }
        }
    }
    let hash = hash.ok_or_else(|| {
        validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
    })?;
    if range.as_ref().is_some_and(|r| r.name == hash.name) {
        return Err(validation(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name",
        ));
    }
    Ok((hash, range))
}

fn throughput(v: Option<&Value>) -> (i64, i64) {
    let r = v
        .and_then(|p| p.get("ReadCapacityUnits"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let w = v
        .and_then(|p| p.get("WriteCapacityUnits"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    (r, w)
}

fn parse_index(
    v: &Value,
    defs: &[KeyAttr],
    global: bool,
    billing: &str,
) -> Result<IndexMeta, ApiError> {
    let name = s(v, "IndexName").unwrap_or_default().to_string();
    if name.len() < 3 || name.len() > 255 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'indexName' failed to satisfy constraint: Member must have length greater than or equal to 3"
        )));
    }
    let (hash, range) = key_schema(v.get("KeySchema"), defs, "keySchema")?;
    let proj = v.get("Projection").cloned().unwrap_or(json!({}));
    let projection = s(&proj, "ProjectionType").unwrap_or("ALL").to_string();
    if !["ALL", "KEYS_ONLY", "INCLUDE"].contains(&projection.as_str()) {
        return Err(validation(format!(
            "1 validation error detected: Value '{projection}' at 'projection.projectionType' failed to satisfy constraint: Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]"
        )));
    }
    let non_key: Vec<String> = proj
        .get("NonKeyAttributes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if projection != "INCLUDE" && !non_key.is_empty() {
        return Err(validation(
            "One or more parameter values were invalid: ProjectionType is ".to_string()
                + &projection
                + ", but NonKeyAttributes is specified",
        ));
    }
    let (rcu, wcu) = throughput(v.get("ProvisionedThroughput"));
    if global && billing == "PROVISIONED" && v.get("ProvisionedThroughput").is_none() {
        return Err(validation(format!(
            "One or more parameter values were invalid: ProvisionedThroughput must be specified for index: {name}"
        )));
    }
    Ok(IndexMeta {
        name,
        hash,
        range,
        projection,
        non_key,
        rcu,
        wcu,
        global,
    })
}

fn iso_label(ms: i64) -> String {
    nimbus_core::format_ms(ms, "")
}

fn create_table(store: &Store, req: &Value) -> R {
    let name = s(req, "TableName").unwrap_or_default().to_string();
    check_table_name(&name)?;
    let defs: Vec<KeyAttr> = req
        .get("AttributeDefinitions")
        .and_then(Value::as_array)
        .ok_or_else(|| validation("1 validation error detected: Value null at 'attributeDefinitions' failed to satisfy constraint: Member must not be null"))?
        .iter()
        .map(|d| KeyAttr {
            name: s(d, "AttributeName").unwrap_or_default().to_string(),
            ty: s(d, "AttributeType").unwrap_or_default().to_string(),
        })
        .collect();
    for d in &defs {
        if !["S", "N", "B"].contains(&d.ty.as_str()) {
            return Err(validation(format!(
                "1 validation error detected: Value '{}' at 'attributeDefinitions.1.member.attributeType' failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]",
                d.ty
            )));
        }
    }
    let (hash, range) = key_schema(req.get("KeySchema"), &defs, "keySchema")?;
    let billing = s(req, "BillingMode").unwrap_or("PROVISIONED").to_string();
    let pt = req.get("ProvisionedThroughput");
    match billing.as_str() {
        "PAY_PER_REQUEST" if pt.is_some() => {
            return Err(validation("One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST"))
        }
        "PROVISIONED" if pt.is_none() => {
            return Err(validation("One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"))
        }
        "PAY_PER_REQUEST" | "PROVISIONED" => {}
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"
            )))
        }
    }
    let (rcu, wcu) = throughput(pt);
    let mut gsis = Vec::new();
    if let Some(arr) = req.get("GlobalSecondaryIndexes").and_then(Value::as_array) {
        if arr.is_empty() {
            return Err(validation(
                "One or more parameter values were invalid: List of GlobalSecondaryIndexes is empty",
            ));
        }
        for g in arr {
            gsis.push(parse_index(g, &defs, true, &billing)?);
        }
    }
    let mut lsis = Vec::new();
    if let Some(arr) = req.get("LocalSecondaryIndexes").and_then(Value::as_array) {
        if arr.is_empty() {
            return Err(validation(
                "One or more parameter values were invalid: List of LocalSecondaryIndexes is empty",
            ));
        }
        for l in arr {
            let ix = parse_index(l, &defs, false, &billing)?;
            if ix.hash != hash {
                return Err(validation(format!(
                    "One or more parameter values were invalid: Index KeySchema does not have the same leading hash key as table KeySchema for index: {}. index hash key: {}, table hash key: {}",
                    ix.name, ix.hash.name, hash.name
                )));
            }
            if range.is_none() {
                return Err(validation("One or more parameter values were invalid: Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex"));
            }
            lsis.push(ix);
        }
    }
    {
        let mut names: Vec<&str> = gsis.iter().chain(&lsis).map(|i| i.name.as_str()).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(validation(
                "One or more parameter values were invalid: Duplicate index name",
            ));
        }
    }
    // Every definition used by some key schema, every key attribute defined once.
    let mut used: Vec<&str> = vec![hash.name.as_str()];
    used.extend(range.iter().map(|r| r.name.as_str()));
    for ix in gsis.iter().chain(&lsis) {
        used.push(&ix.hash.name);
        used.extend(ix.range.iter().map(|r| r.name.as_str()));
    }
    let unused: Vec<&str> = defs
        .iter()
        .map(|d| d.name.as_str())
        .filter(|d| !used.contains(d))
        .collect();
    if !unused.is_empty() {
        return Err(validation(format!(
            "One or more parameter values were invalid: Some AttributeDefinitions are not used. AttributeDefinitions: [{}], keys used: [{}]",
            defs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
            {
                let mut u = used.clone();
                u.dedup();
                u.join(", ")
            }
        )));
    }
    let stream_view = stream_spec(req.get("StreamSpecification"))?;
    if store.table(&name).is_some() {
        return Err(ApiError::new(
            400,
            "ResourceInUseException",
            format!("Table already exists: {name}"),
        ));
    }
    let now = nimbus_core::now_ms();
    let arn = format!(
        "arn:aws:dynamodb:{}:{}:table/{name}",
        store.region, store.account_id
    );
    let tags = parse_tags(req.get("Tags"))?;
    let meta = store.write(|tx| -> Result<TableMeta, ApiError> {
        if tx
            .tx
            .query_row("SELECT 1 FROM tables WHERE name = ?1", [&name], |_| Ok(()))
            .is_ok()
        {
            return Err(ApiError::new(
                400,
                "ResourceInUseException",
                format!("Table already exists: {name}"),
            ));
        }
        let tid = tx.next_tid()?;
        let mut m = TableMeta {
            name: name.clone(),
            tid,
            arn: arn.clone(),
            table_id: uuid::Uuid::new_v4().to_string(),
            created_ms: now,
            hash,
            range,
            attr_defs: defs,
            billing,
            rcu,
            wcu,
            gsis,
            lsis,
            stream: None,
            latest_stream: None,
            ttl_attr: None,
            deletion_protection: req
                .get("DeletionProtectionEnabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            table_class: s(req, "TableClass").unwrap_or("STANDARD").to_string(),
        };
        if let Some(view) = stream_view {
            enable_stream(tx, &mut m, &view, now)?;
        }
        tx.save_meta(&m)?;
        for (k, v) in tags {
            tx.tx.execute(
                "INSERT OR REPLACE INTO tags(arn, key, value) VALUES (?1, ?2, ?3)",
                rusqlite::params![arn, k, v],
            )?;
        }
        Ok(m)
    })?;
    tracing::info!(table = %meta.name, "dynamodb table created");
    Ok(json!({"TableDescription": describe(store, &meta, "ACTIVE")?}))
}

fn stream_spec(v: Option<&Value>) -> Result<Option<String>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let enabled = v
        .get("StreamEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !enabled {
        if v.get("StreamViewType").is_some() {
            return Err(validation("One or more parameter values were invalid: StreamViewType cannot be specified when StreamEnabled is false"));
        }
        return Ok(None);
    }
    match s(v, "StreamViewType") {
        Some(t @ ("KEYS_ONLY" | "NEW_IMAGE" | "OLD_IMAGE" | "NEW_AND_OLD_IMAGES")) => {
            Ok(Some(t.to_string()))
        }
        Some(other) => Err(validation(format!(
            "1 validation error detected: Value '{other}' at 'streamSpecification.streamViewType' failed to satisfy constraint: Member must satisfy enum value set: [NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES, KEYS_ONLY]"
        ))),
        None => Err(validation(
            "One or more parameter values were invalid: StreamViewType is required when StreamEnabled is true",
        )),
    }
}

fn enable_stream(tx: &mut Tx<'_>, m: &mut TableMeta, view: &str, now: i64) -> Result<(), ApiError> {
    let label = iso_label(now);
    let arn = format!("{}/stream/{label}", m.arn);
    let ks = json!([{"AttributeName": m.hash.name, "KeyType": "HASH"}]);
    let mut ks = ks.as_array().cloned().unwrap_or_default();
    if let Some(r) = &m.range {
        ks.push(json!({"AttributeName": r.name, "KeyType": "RANGE"}));
    }
    tx.tx.execute(
        "INSERT OR REPLACE INTO streams(arn, table_name, tid, view_type, label, key_schema, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![arn, m.name, m.tid, view, label, Value::Array(ks).to_string(), now],
    )?;
    let s = StreamMeta {
        arn,
        label,
        view_type: view.to_string(),
    };
    m.stream = Some(s.clone());
    m.latest_stream = Some(s);
    Ok(())
}

fn disable_stream(tx: &mut Tx<'_>, m: &mut TableMeta) -> Result<(), ApiError> {
    if let Some(s) = m.stream.take() {
        tx.tx.execute(
            "UPDATE streams SET disabled_ms = ?2 WHERE arn = ?1",
            rusqlite::params![s.arn, nimbus_core::now_ms()],
        )?;
    }
    Ok(())
}

fn key_schema_json(h: &KeyAttr, r: &Option<KeyAttr>) -> Value {
    let mut v = vec![json!({"AttributeName": h.name, "KeyType": "HASH"})];
    if let Some(r) = r {
        v.push(json!({"AttributeName": r.name, "KeyType": "RANGE"}));
    }
    Value::Array(v)
}

/// `TableDescription`.
pub fn describe(store: &Store, t: &TableMeta, status: &str) -> R {
    let (count, size): (i64, i64) = store.read(|c| -> Result<_, ApiError> {
        Ok(c.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items WHERE tid = ?1",
            [t.tid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    })?;
    let mut d = json!({
        "AttributeDefinitions": t.attr_defs.iter().map(|a| json!({"AttributeName": a.name, "AttributeType": a.ty})).collect::<Vec<_>>(),
        "TableName": t.name,
        "KeySchema": key_schema_json(&t.hash, &t.range),
        "TableStatus": status,
        "CreationDateTime": t.created_ms as f64 / 1000.0,
        "ProvisionedThroughput": {"NumberOfDecreasesToday": 0, "ReadCapacityUnits": t.rcu, "WriteCapacityUnits": t.wcu},
        "TableSizeBytes": size,
        "ItemCount": count,
        "TableArn": t.arn,
        "TableId": t.table_id,
        "DeletionProtectionEnabled": t.deletion_protection,
        "TableClassSummary": {"TableClass": t.table_class},
    });
    if t.billing == "PAY_PER_REQUEST" {
        d["BillingModeSummary"] = json!({"BillingMode": "PAY_PER_REQUEST",
            "LastUpdateToPayPerRequestDateTime": t.created_ms as f64 / 1000.0});
    } else {
        d["BillingModeSummary"] = json!({"BillingMode": "PROVISIONED"});
    }
    let ix_json = |ix: &IndexMeta| -> Result<Value, ApiError> {
        let n: i64 = store.read(|c| -> Result<_, ApiError> {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM idx WHERE tid = ?1 AND iname = ?2",
                rusqlite::params![t.tid, ix.name],
                |r| r.get(0),
            )?)
        })?;
        let mut proj = json!({"ProjectionType": ix.projection});
        if ix.projection == "INCLUDE" {
            proj["NonKeyAttributes"] = json!(ix.non_key);
        }
        let mut v = json!({
            "IndexName": ix.name,
            "KeySchema": key_schema_json(&ix.hash, &ix.range),
            "Projection": proj,
            "IndexSizeBytes": 0,
            "ItemCount": n,
            "IndexArn": format!("{}/index/{}", t.arn, ix.name),
        });
        if ix.global {
            v["IndexStatus"] = json!("ACTIVE");
            v["ProvisionedThroughput"] = json!({"NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": ix.rcu, "WriteCapacityUnits": ix.wcu});
        }
        Ok(v)
    };
    if !t.gsis.is_empty() {
        d["GlobalSecondaryIndexes"] =
            Value::Array(t.gsis.iter().map(ix_json).collect::<Result<_, _>>()?);
    }
    if !t.lsis.is_empty() {
        d["LocalSecondaryIndexes"] =
            Value::Array(t.lsis.iter().map(ix_json).collect::<Result<_, _>>()?);
    }
    if let Some(s) = &t.stream {
        d["StreamSpecification"] = json!({"StreamEnabled": true, "StreamViewType": s.view_type});
    }
    if let Some(s) = &t.latest_stream {
        d["LatestStreamLabel"] = json!(s.label);
        d["LatestStreamArn"] = json!(s.arn);
    }
    Ok(d)
}

fn list_tables(store: &Store, req: &Value) -> R {
    let limit = req.get("Limit").and_then(Value::as_i64).unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value {} 100",
            if limit < 1 { "greater than or equal to 1" } else { "less than or equal to" }
        )));
    }
    let start = s(req, "ExclusiveStartTableName");
    let names: Vec<String> = store
        .table_names()
        .into_iter()
        .filter(|n| start.is_none_or(|s| n.as_str() > s))
        .collect();
    let page: Vec<&String> = names.iter().take(limit as usize).collect();
    let mut out = json!({"TableNames": page});
    if names.len() > limit as usize {
        out["LastEvaluatedTableName"] = json!(page.last());
    }
    Ok(out)
}

fn delete_table(store: &Store, req: &Value) -> R {
    let t = table_named(store, req)?;
    if t.deletion_protection {
        return Err(validation(format!(
            "Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first. TableName: {}",
            t.name
        )));
    }
    let desc = describe(store, &t, "DELETING")?;
    store.write(|tx| -> Result<(), ApiError> {
        let mut m = (*t).clone();
        disable_stream(tx, &mut m)?;
        tx.drop_table(&m)?;
        Ok(())
    })?;
    tracing::info!(table = %t.name, "dynamodb table deleted");
    Ok(json!({"TableDescription": desc}))
}

fn update_table(store: &Store, req: &Value) -> R {
    let t = table_named(store, req)?;
    let mut m = (*t).clone();
    let mut defs = m.attr_defs.clone();
    if let Some(arr) = req.get("AttributeDefinitions").and_then(Value::as_array) {
        for d in arr {
            let ka = KeyAttr {
                name: s(d, "AttributeName").unwrap_or_default().to_string(),
                ty: s(d, "AttributeType").unwrap_or_default().to_string(),
            };
            if !defs.iter().any(|x| x.name == ka.name) {
                defs.push(ka);
            }
        }
    }
    if let Some(b) = s(req, "BillingMode") {
        if !["PROVISIONED", "PAY_PER_REQUEST"].contains(&b) {
            return Err(validation(format!(
                "1 validation error detected: Value '{b}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"
            )));
        }
        m.billing = b.to_string();
        if b == "PAY_PER_REQUEST" {
            m.rcu = 0;
            m.wcu = 0;
        }
    }
    if let Some(pt) = req.get("ProvisionedThroughput") {
        if m.billing == "PAY_PER_REQUEST" {
            return Err(validation("One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST"));
        }
        let (r, w) = throughput(Some(pt));
        m.rcu = r;
        m.wcu = w;
    }
    if let Some(d) = req
        .get("DeletionProtectionEnabled")
        .and_then(Value::as_bool)
    {
        m.deletion_protection = d;
    }
    if let Some(c) = s(req, "TableClass") {
        m.table_class = c.to_string();
    }
    let mut new_indexes = Vec::new();
    if let Some(ups) = req
        .get("GlobalSecondaryIndexUpdates")
        .and_then(Value::as_array)
    {
        for u in ups {
            if let Some(c) = u.get("Create") {
                let ix = parse_index(c, &defs, true, &m.billing)?;
                if m.index(&ix.name).is_some() {
                    return Err(validation(format!(
                        "One or more parameter values were invalid: Index with name {} already exists",
                        ix.name
                    )));
                }
                new_indexes.push(ix.clone());
                m.gsis.push(ix);
            } else if let Some(d) = u.get("Delete") {
                let n = s(d, "IndexName").unwrap_or_default();
                if !m.gsis.iter().any(|g| g.name == n) {
                    return Err(ApiError::new(
                        400,
                        "ResourceNotFoundException",
                        format!("Requested resource not found: Index: {n} not found"),
                    ));
                }
                m.gsis.retain(|g| g.name != n);
            } else if let Some(up) = u.get("Update") {
                let n = s(up, "IndexName").unwrap_or_default();
                let Some(g) = m.gsis.iter_mut().find(|g| g.name == n) else {
                    return Err(ApiError::new(
                        400,
                        "ResourceNotFoundException",
                        format!("Requested resource not found: Index: {n} not found"),
                    ));
                };
                let (r, w) = throughput(up.get("ProvisionedThroughput"));
                g.rcu = r;
                g.wcu = w;
            }
        }
    }
    // Keep only the definitions some key schema still uses.
    m.attr_defs = defs
        .into_iter()
        .filter(|d| {
            d.name == m.hash.name
                || m.range.as_ref().is_some_and(|r| r.name == d.name)
                || m.gsis.iter().chain(&m.lsis).any(|i| {
                    i.hash.name == d.name || i.range.as_ref().is_some_and(|r| r.name == d.name)
                })
        })
        .collect();
    let stream_change = match req.get("StreamSpecification") {
        None => None,
        Some(v) => Some(stream_spec(Some(v))?),
    };
    if let Some(Some(_)) = &stream_change {
        if m.stream.is_some() {
            return Err(validation(format!(
                "Table already has an enabled stream: TableName: {}",
                m.name
            )));
        }
    }
    if let Some(None) = &stream_change {
        if m.stream.is_none() {
            return Err(validation(format!(
                "Table already has no enabled stream: TableName: {}",
                m.name
            )));
        }
    }
    let removed: Vec<String> = t
        .gsis
        .iter()
        .filter(|g| !m.gsis.iter().any(|x| x.name == g.name))
        .map(|g| g.name.clone())
        .collect();
    let m = store.write(|tx| -> Result<TableMeta, ApiError> {
        match stream_change {
            Some(Some(view)) => enable_stream(tx, &mut m, &view, nimbus_core::now_ms())?,
            Some(None) => disable_stream(tx, &mut m)?,
            None => {}
        }
        for n in &removed {
            tx.tx.execute(
                "DELETE FROM idx WHERE tid = ?1 AND iname = ?2",
                rusqlite::params![m.tid, n],
            )?;
        }
        for ix in &new_indexes {
            tx.backfill_index(&m, ix)?;
        }
        tx.save_meta(&m)?;
        Ok(m)
    })?;
    Ok(json!({"TableDescription": describe(store, &m, "ACTIVE")?}))
}

fn update_ttl(store: &Store, req: &Value) -> R {
    let t = table_named(store, req)?;
    let spec = req
        .get("TimeToLiveSpecification")
        .ok_or_else(|| validation("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null"))?;
    let enabled = spec
        .get("Enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let attr = s(spec, "AttributeName").unwrap_or_default().to_string();
    if attr.is_empty() {
        return Err(validation("1 validation error detected: Value null at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must not be null"));
    }
    let mut m = (*t).clone();
    match (enabled, &m.ttl_attr) {
        (true, Some(_)) => return Err(validation("TimeToLive is already enabled")),
        (false, None) => return Err(validation("TimeToLive is already disabled")),
        (false, Some(a)) if *a != attr => {
            return Err(validation(format!(
                "TimeToLive is active on a different AttributeName: current AttributeName is {a}"
            )))
        }
        _ => {}
    }
    m.ttl_attr = enabled.then(|| attr.clone());
    store.write(|tx| -> Result<(), ApiError> {
        tx.save_meta(&m)?;
        tx.backfill_ttl(&m)?;
        Ok(())
    })?;
    Ok(json!({"TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": attr}}))
}

/// Delete the items whose TTL passed, as the service principal (stream `REMOVE`
/// records carry its `userIdentity`). Returns how many were deleted.
pub fn sweep_ttl(store: &Store, now_s: i64, batch: usize) -> Result<usize, ApiError> {
    let mut total = 0;
    for t in store.tables() {
        if t.ttl_attr.is_none() {
            continue;
        }
        let n = store.write(|tx| -> Result<usize, ApiError> {
            let rows: Vec<String> = {
                let mut st = tx.tx.prepare(
                    "SELECT item FROM items WHERE tid = ?1 AND expires IS NOT NULL AND expires < ?2 LIMIT ?3",
                )?;
                let r = st
                    .query_map(rusqlite::params![t.tid, now_s, batch as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                r
            };
            let mut n = 0;
            for s in rows {
                let Some(item) = parse_stored(&s) else { continue };
                let key = t.key_of(&item);
                tx.put(
                    &t,
                    &key,
                    Some(&item),
                    None,
                    Some(json!({"principalId": "dynamodb.amazonaws.com", "type": "Service"})),
                )?;
                n += 1;
            }
            Ok(n)
        })?;
        total += n;
    }
    Ok(total)
}

fn parse_tags(v: Option<&Value>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(arr) = v.and_then(Value::as_array) else {
        return Ok(vec![]);
    };
    arr.iter()
        .map(|t| {
            let k = s(t, "Key").unwrap_or_default();
            if k.is_empty() || k.len() > 128 {
                return Err(validation("One or more parameter values were invalid: Tag key must be between 1 and 128 characters"));
            }
            Ok((k.to_string(), s(t, "Value").unwrap_or_default().to_string()))
        })
        .collect()
}

fn arn_table(store: &Store, req: &Value) -> Result<std::sync::Arc<TableMeta>, ApiError> {
    let arn = s(req, "ResourceArn").unwrap_or_default();
    let name = arn.rsplit_once(":table/").map(|(_, n)| n).unwrap_or("");
    let name = name.split('/').next().unwrap_or("");
    store.table(name).filter(|t| t.arn == arn).ok_or_else(|| {
        ApiError::new(
            400,
            "ResourceNotFoundException",
            format!("Requested resource not found: ResourcArn: {arn} not found"),
        )
    })
}

fn tag_resource(store: &Store, req: &Value) -> R {
    let t = arn_table(store, req)?;
    let tags = parse_tags(req.get("Tags"))?;
    store.write(|tx| -> Result<(), ApiError> {
        for (k, v) in tags {
            tx.tx.execute(
                "INSERT OR REPLACE INTO tags(arn, key, value) VALUES (?1, ?2, ?3)",
                rusqlite::params![t.arn, k, v],
            )?;
        }
        Ok(())
    })?;
    Ok(json!({}))
}

fn untag_resource(store: &Store, req: &Value) -> R {
    let t = arn_table(store, req)?;
    let keys: Vec<String> = req
        .get("TagKeys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    store.write(|tx| -> Result<(), ApiError> {
        for k in keys {
            tx.tx.execute(
                "DELETE FROM tags WHERE arn = ?1 AND key = ?2",
                rusqlite::params![t.arn, k],
            )?;
        }
        Ok(())
    })?;
    Ok(json!({}))
}

fn list_tags(store: &Store, req: &Value) -> R {
    let t = arn_table(store, req)?;
    let tags: Vec<Value> = store.read(|c| -> Result<_, ApiError> {
        let mut st = c.prepare("SELECT key, value FROM tags WHERE arn = ?1 ORDER BY key")?;
        let r = st
            .query_map([&t.arn], |r| {
                Ok(json!({"Key": r.get::<_, String>(0)?, "Value": r.get::<_, String>(1)?}))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(r)
    })?;
    Ok(json!({"Tags": tags}))
}

// ---- items ------------------------------------------------------------------

fn put_item(store: &Store, req: &Value) -> R {
    let t = table_for_item(store, s(req, "TableName").unwrap_or_default())?;
    let item = parse_item_field(req, "Item")?;
    check_item(&t, &item)?;
    let rv = return_values(req, &["NONE", "ALL_OLD"])?;
    let mut params = Params::from_request(req).map_err(validation)?;
    let cond = write_condition(req, &mut params)?;
    check_params(req, &params)?;
    let key = t.key_of(&item);
    let old = store.write(|tx| -> Result<Option<Item>, ApiError> {
        let old = tx.get(&t, &key)?;
        if let Some(c) = &cond {
            if !eval(c, old.as_ref().unwrap_or(&Item::new())) {
                return Err(cond_failed(old.as_ref(), req));
            }
        }
        tx.put(&t, &key, old.as_ref(), Some(&item), None)?;
        Ok(old)
    })?;
    let mut out = json!({});
    if rv == "ALL_OLD" {
        if let Some(o) = &old {
            out["Attributes"] = item_to_json(o);
        }
    }
    if let Some(c) = capacity(req, &t, write_units(item_size(&item))) {
        out["ConsumedCapacity"] = c;
    }
    Ok(out)
}

fn get_item_op(store: &Store, req: &Value) -> R {
    let t = table_for_item(store, s(req, "TableName").unwrap_or_default())?;
    let key = parse_item_field(req, "Key")?;
    check_key(&t, &key)?;
    let mut params = Params::from_request(req).map_err(validation)?;
    let proj = read_projection(req, &mut params)?;
    check_params(req, &params)?;
    let item = store.read(|c| -> Result<_, ApiError> { Ok(get_item(c, &t, &key)?) })?;
    let mut out = json!({});
    let consistent = req.get("ConsistentRead").and_then(Value::as_bool) == Some(true);
    let size = item.as_ref().map(item_size).unwrap_or(0);
    if let Some(i) = item {
        let i = match &proj {
            Some(p) => project(&i, p),
            None => i,
        };
        out["Item"] = item_to_json(&i);
    }
    if let Some(c) = capacity(req, &t, read_units(size, consistent)) {
        out["ConsumedCapacity"] = c;
    }
    Ok(out)
}

fn delete_item(store: &Store, req: &Value) -> R {
    let t = table_for_item(store, s(req, "TableName").unwrap_or_default())?;
    let key = parse_item_field(req, "Key")?;
    check_key(&t, &key)?;
    let rv = return_values(req, &["NONE", "ALL_OLD"])?;
    let mut params = Params::from_request(req).map_err(validation)?;
    let cond = write_condition(req, &mut params)?;
    check_params(req, &params)?;
    let old = store.write(|tx| -> Result<Option<Item>, ApiError> {
        let old = tx.get(&t, &key)?;
        if let Some(c) = &cond {
            if !eval(c, old.as_ref().unwrap_or(&Item::new())) {
                return Err(cond_failed(old.as_ref(), req));
            }
        }
        if old.is_some() {
            tx.put(&t, &key, old.as_ref(), None, None)?;
        }
        Ok(old)
    })?;
    let mut out = json!({});
    if rv == "ALL_OLD" {
        if let Some(o) = &old {
            out["Attributes"] = item_to_json(o);
        }
    }
    if let Some(c) = capacity(
        req,
        &t,
        write_units(old.as_ref().map(item_size).unwrap_or(0)),
    ) {
        out["ConsumedCapacity"] = c;
    }
    Ok(out)
}

/// Legacy `AttributeUpdates` to update actions.
fn legacy_updates(m: &Map<String, Value>) -> Result<Vec<UpdateAction>, ApiError> {
    let mut out = Vec::new();
    for (name, spec) in m {
        let path = vec![PathElem::Key(name.clone())];
        let value = match spec.get("Value") {
            Some(v) => Some(AttrValue::from_json(v).map_err(validation)?),
            None => None,
        };
        match (s(spec, "Action").unwrap_or("PUT"), value) {
            ("PUT", Some(v)) => out.push(UpdateAction::Set(
                path,
                SetValue::Operand(Operand::Value(v)),
            )),
            ("DELETE", None) => out.push(UpdateAction::Remove(path)),
            ("DELETE", Some(v)) => out.push(UpdateAction::Delete(path, v)),
            ("ADD", Some(v)) => out.push(UpdateAction::Add(path, v)),
            (a, _) => {
                return Err(validation(format!(
                    "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified; action: {a}"
                )))
            }
        }
    }
    Ok(out)
}

fn update_item(store: &Store, req: &Value) -> R {
    let t = table_for_item(store, s(req, "TableName").unwrap_or_default())?;
    let key = parse_item_field(req, "Key")?;
    check_key(&t, &key)?;
    let rv = return_values(
        req,
        &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
    )?;
    let mut params = Params::from_request(req).map_err(validation)?;
    let actions = match (
        s(req, "UpdateExpression"),
        req.get("AttributeUpdates").and_then(Value::as_object),
    ) {
        (Some(_), Some(_)) => return Err(mixed("AttributeUpdates", "UpdateExpression")),
        (Some(u), None) => parse_update(u, &mut params).map_err(validation)?,
        (None, Some(a)) => legacy_updates(a)?,
        (None, None) => vec![],
    };
    let cond = write_condition(req, &mut params)?;
    check_params(req, &params)?;
    let touched = touched_attributes(&actions);
    for k in t.key_names() {
        if touched.contains(k) {
            return Err(validation(format!(
                "One or more parameter values were invalid: Cannot update attribute {k}. This attribute is part of the key"
            )));
        }
    }
    let (old, new) = store.write(|tx| -> Result<(Option<Item>, Item), ApiError> {
        let old = tx.get(&t, &key)?;
        if let Some(c) = &cond {
            if !eval(c, old.as_ref().unwrap_or(&Item::new())) {
                return Err(cond_failed(old.as_ref(), req));
            }
        }
        let base = old.clone().unwrap_or_else(|| key.clone());
        let new = apply_update(&base, &actions).map_err(validation)?;
        check_item(&t, &new)?;
        tx.put(&t, &key, old.as_ref(), Some(&new), None)?;
        Ok((old, new))
    })?;
    let mut out = json!({});
    // UPDATED_*: exactly the document paths the actions named.
    let paths: Vec<Path> = actions
        .iter()
        .map(|a| match a {
            UpdateAction::Set(p, _)
            | UpdateAction::Remove(p)
            | UpdateAction::Add(p, _)
            | UpdateAction::Delete(p, _) => p.clone(),
        })
        .collect();
    let pick = |it: &Item| -> Item { project(it, &paths) };
    let attrs = match rv.as_str() {
        "ALL_OLD" => old.clone(),
        "ALL_NEW" => Some(new.clone()),
        "UPDATED_OLD" => old.as_ref().map(pick),
        "UPDATED_NEW" => Some(pick(&new)),
        _ => None,
    };
    if let Some(a) = attrs {
        if !a.is_empty() {
            out["Attributes"] = item_to_json(&a);
        }
    }
    if let Some(c) = capacity(req, &t, write_units(item_size(&new))) {
        out["ConsumedCapacity"] = c;
    }
    Ok(out)
}

// ---- query and scan ---------------------------------------------------------

const PAGE_BYTES: usize = 1024 * 1024;

/// The attributes an index holds of an item.
fn index_projection(t: &TableMeta, ix: &IndexMeta, item: &Item) -> Item {
    if ix.projection == "ALL" {
        return item.clone();
    }
    let mut keep: Vec<&str> = t.key_names();
    keep.push(&ix.hash.name);
    if let Some(r) = &ix.range {
        keep.push(&r.name);
    }
    if ix.projection == "INCLUDE" {
        keep.extend(ix.non_key.iter().map(String::as_str));
    }
    item.iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The key a page ends at: the table's key plus the index's.
fn last_key(t: &TableMeta, ix: Option<&IndexMeta>, item: &Item) -> Item {
    let mut k = t.key_of(item);
    if let Some(ix) = ix {
        for ka in std::iter::once(&ix.hash).chain(ix.range.as_ref()) {
            if let Some(v) = item.get(&ka.name) {
                k.insert(ka.name.clone(), v.clone());
            }
        }
    }
    k
}

fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut v = p.to_vec();
    while let Some(&last) = v.last() {
        if last == 0xFF {
            v.pop();
        } else {
            *v.last_mut()? += 1;
            return Some(v);
        }
    }
    None
}

fn query(store: &Store, req: &Value, scan: bool) -> R {
    let t = table_for_item(store, s(req, "TableName").unwrap_or_default())?;
    let ix = match s(req, "IndexName") {
        Some(n) => Some(t.index(n).cloned().ok_or_else(|| {
            validation(format!("The table does not have the specified index: {n}"))
        })?),
        None => None,
    };
    let consistent = req.get("ConsistentRead").and_then(Value::as_bool) == Some(true);
    if consistent && ix.as_ref().is_some_and(|i| i.global) {
        return Err(validation(
            "Consistent reads are not supported on global secondary indexes",
        ));
    }
    let limit = match req.get("Limit").and_then(Value::as_i64) {
        Some(l) if l < 1 => {
            return Err(validation(format!(
                "1 validation error detected: Value '{l}' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )))
        }
        Some(l) => Some(l as usize),
        None => None,
    };
    let (hash_attr, range_attr) = match &ix {
        Some(i) => (i.hash.clone(), i.range.clone()),
        None => (t.hash.clone(), t.range.clone()),
    };
    let mut params = Params::from_request(req).map_err(validation)?;
    // Key condition (Query only).
    let key_cond: Option<KeyCond> = if scan {
        None
    } else {
        match (
            s(req, "KeyConditionExpression"),
            req.get("KeyConditions").and_then(Value::as_object),
        ) {
            (Some(_), Some(_)) => return Err(mixed("KeyConditions", "KeyConditionExpression")),
            (Some(k), None) => Some(
                parse_key_condition(k, &mut params, &hash_attr.name, range_attr.as_ref().map(|r| r.name.as_str()))
                    .map_err(validation)?,
            ),
            (None, Some(kc)) => Some(legacy_key_conditions(kc, &hash_attr, range_attr.as_ref())?),
            (None, None) => {
                return Err(validation(
                    "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
                ))
            }
        }
    };
    if let Some(kc) = &key_cond {
        if kc.hash.type_name() != hash_attr.ty {
            return Err(validation(
                "One or more parameter values were invalid: Condition parameter type does not match schema type",
            ));
        }
        if let Some((_, rc)) = &kc.range {
            let vals: Vec<&AttrValue> = match rc {
                RangeCond::Cmp(_, v) | RangeCond::BeginsWith(v) => vec![v],
                RangeCond::Between(a, b) => vec![a, b],
            };
            let ty = range_attr.as_ref().map(|r| r.ty.as_str()).unwrap_or("");
            if vals.iter().any(|v| v.type_name() != ty) {
                return Err(validation(
                    "One or more parameter values were invalid: Condition parameter type does not match schema type",
                ));
            }
            if matches!(rc, RangeCond::BeginsWith(_)) && ty == "N" {
                return Err(validation(
                    "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N",
                ));
            }
        }
    }
    let filter_kind = if scan { "ScanFilter" } else { "QueryFilter" };
    let filter = match (
        s(req, "FilterExpression"),
        req.get(filter_kind).and_then(Value::as_object),
    ) {
        (Some(_), Some(_)) => return Err(mixed(filter_kind, "FilterExpression")),
        (Some(f), None) => {
            Some(parse_condition(f, &mut params, "FilterExpression").map_err(validation)?)
        }
        (None, Some(m)) => Some(legacy_conditions(m, s(req, "ConditionalOperator"), false)?),
        (None, None) => None,
    };
    let proj = read_projection(req, &mut params)?;
    check_params(req, &params)?;
    let select = s(req, "Select").unwrap_or(if proj.is_some() {
        "SPECIFIC_ATTRIBUTES"
    } else if ix.is_some() {
        "ALL_PROJECTED_ATTRIBUTES"
    } else {
        "ALL_ATTRIBUTES"
    });
    match select {
        "ALL_ATTRIBUTES" | "ALL_PROJECTED_ATTRIBUTES" | "COUNT" if proj.is_some() => {
            return Err(validation(
                "Cannot specify the AttributesToGet when choosing to get ALL_ATTRIBUTES",
            ))
        }
        "ALL_PROJECTED_ATTRIBUTES" if ix.is_none() => {
            return Err(validation(
                "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName",
            ))
        }
        "ALL_ATTRIBUTES" if ix.as_ref().is_some_and(|i| i.global && i.projection != "ALL") => {
            return Err(validation(format!(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global secondary index {} because its projection type is not ALL",
                ix.as_ref().map(|i| i.name.as_str()).unwrap_or_default()
            )))
        }
        "ALL_ATTRIBUTES" | "ALL_PROJECTED_ATTRIBUTES" | "COUNT" | "SPECIFIC_ATTRIBUTES" => {}
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'select' failed to satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]"
            )))
        }
    }
    let forward = req.get("ScanIndexForward").and_then(Value::as_bool) != Some(false);
    // Parallel scan.
    let segment = req.get("Segment").and_then(Value::as_i64);
    let total = req.get("TotalSegments").and_then(Value::as_i64);
    let seg_range: Option<(i64, i64)> = match (segment, total) {
        (None, None) => None,
        (Some(_), None) => return Err(validation("The TotalSegments parameter is required but was not present in the request when Segment parameter is present")),
        (None, Some(_)) => return Err(validation("The Segment parameter is required but was not present in the request when parameter TotalSegments is present")),
        (Some(sg), Some(tt)) => {
            if !(1..=1_000_000).contains(&tt) {
                return Err(validation(format!("1 validation error detected: Value '{tt}' at 'totalSegments' failed to satisfy constraint: Member must have value less than or equal to 1000000")));
            }
            if sg < 0 || sg >= tt {
                return Err(validation(format!("The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {sg} is not less than TotalSegments: {tt}")));
            }
            let span = 1i64 << 32;
            Some((sg * span / tt, (sg + 1) * span / tt))
        }
    };
    // ExclusiveStartKey.
    let start: Option<Item> = match req.get("ExclusiveStartKey") {
        Some(v) => {
            let k = item_from_json(v).map_err(validation)?;
            let mut need: Vec<&str> = t.key_names();
            if let Some(ix) = &ix {
                need.push(&ix.hash.name);
                if let Some(r) = &ix.range {
                    need.push(&r.name);
                }
            }
            if need.iter().any(|n| !k.contains_key(*n))
                || k.keys().any(|n| !need.contains(&n.as_str()))
            {
                return Err(validation("The provided starting key is invalid: The provided key element does not match the schema"));
            }
            if let Some(kc) = &key_cond {
                if k.get(&hash_attr.name).is_some_and(|v| !v.equals(&kc.hash)) {
                    return Err(validation("The provided starting key is invalid: The provided key element does not match the schema"));
                }
            }
            Some(k)
        }
        None => None,
    };

    // Build the SQL.
    let mut sql = String::new();
    let mut args: Vec<SqlValue> = Vec::new();
    let dir = if forward { "ASC" } else { "DESC" };
    match (&ix, scan) {
        (None, _) => {
            sql.push_str("SELECT item FROM items WHERE tid = ?");
            args.push(SqlValue::Integer(t.tid));
        }
        (Some(i), _) => {
            sql.push_str(
                "SELECT it.item FROM idx i JOIN items it ON it.tid = i.tid AND it.hk = i.hk AND it.rk = i.rk \
                 WHERE i.tid = ? AND i.iname = ?",
            );
            args.push(SqlValue::Integer(t.tid));
            args.push(SqlValue::Text(i.name.clone()));
        }
    }
    let (hcol, rcol, tail) = if ix.is_some() {
        ("i.ihk", "i.irk", "i.hk, i.rk")
    } else {
        ("hk", "rk", "")
    };
    let mut prefix_end: Option<Vec<u8>> = None;
    if let Some(kc) = &key_cond {
        sql.push_str(&format!(" AND {hcol} = ?"));
        args.push(SqlValue::Blob(kc.hash.key_bytes()));
        if let Some((_, rc)) = &kc.range {
            match rc {
                RangeCond::Cmp(op, v) => {
                    let o = match op {
                        CmpOp::Eq => "=",
                        CmpOp::Lt => "<",
                        CmpOp::Le => "<=",
                        CmpOp::Gt => ">",
                        _ => ">=",
                    };
                    sql.push_str(&format!(" AND {rcol} {o} ?"));
                    args.push(SqlValue::Blob(v.key_bytes()));
                }
                RangeCond::Between(a, b) => {
                    sql.push_str(&format!(" AND {rcol} >= ? AND {rcol} <= ?"));
                    args.push(SqlValue::Blob(a.key_bytes()));
                    args.push(SqlValue::Blob(b.key_bytes()));
                }
                RangeCond::BeginsWith(p) => {
                    let pb = p.key_bytes();
                    sql.push_str(&format!(" AND {rcol} >= ?"));
                    args.push(SqlValue::Blob(pb.clone()));
                    if let Some(end) = prefix_successor(&pb) {
                        sql.push_str(&format!(" AND {rcol} < ?"));
                        args.push(SqlValue::Blob(end.clone()));
                        prefix_end = Some(end);
                    }
                }
            }
        }
    }
    let _ = prefix_end;
    if let Some(k) = &start {
        let (hk, rk) = row_key(&t, k);
        match (&ix, scan) {
            (None, false) => {
                sql.push_str(if forward {
                    " AND rk > ?"
                } else {
                    " AND rk < ?"
                });
                args.push(SqlValue::Blob(rk));
            }
            (None, true) => {
                sql.push_str(" AND (h32, hk, rk) > (?, ?, ?)");
                args.push(SqlValue::Integer(h32(&hk) as i64));
                args.push(SqlValue::Blob(hk));
                args.push(SqlValue::Blob(rk));
            }
            (Some(i), _) => {
                let ihk = k
                    .get(&i.hash.name)
                    .map(|v| v.key_bytes())
                    .unwrap_or_default();
                let irk = i
                    .range
                    .as_ref()
                    .and_then(|r| k.get(&r.name))
                    .map(|v| v.key_bytes())
                    .unwrap_or_default();
                let cmp = if forward { ">" } else { "<" };
                sql.push_str(&format!(
                    " AND (i.ihk, i.irk, i.hk, i.rk) {cmp} (?, ?, ?, ?)"
                ));
                args.push(SqlValue::Blob(ihk));
                args.push(SqlValue::Blob(irk));
                args.push(SqlValue::Blob(hk));
                args.push(SqlValue::Blob(rk));
            }
        }
    }
    if let (Some((lo, hi)), None) = (seg_range, &ix) {
        sql.push_str(" AND h32 >= ? AND h32 < ?");
        args.push(SqlValue::Integer(lo));
        args.push(SqlValue::Integer(hi));
    }
    match (&ix, scan) {
        (None, false) => sql.push_str(&format!(" ORDER BY rk {dir}")),
        (None, true) => sql.push_str(" ORDER BY h32, hk, rk"),
        (Some(_), false) => {
            sql.push_str(&format!(" ORDER BY {rcol} {dir}, i.hk {dir}, i.rk {dir}"))
        }
        (Some(_), true) => sql.push_str(&format!(" ORDER BY {hcol}, {rcol}, {tail}")),
    }

    let ixr = ix.as_ref();
    let result = store.read(|c: &Connection| -> Result<_, ApiError> {
        let mut st = c.prepare(&sql)?;
        let mut rows = st.query(params_from_iter(args.iter()))?;
        let mut items = Vec::new();
        let mut count = 0usize;
        let mut scanned = 0usize;
        let mut bytes = 0usize;
        let mut last: Option<Item> = None;
        let mut more = false;
        while let Some(row) = rows.next()? {
            if limit.is_some_and(|l| scanned >= l) || bytes >= PAGE_BYTES {
                more = true;
                break;
            }
            let s: String = row.get(0)?;
            let Some(item) = parse_stored(&s) else {
                continue;
            };
            if let (Some((lo, hi)), Some(i)) = (seg_range, ixr) {
                let ihk = item
                    .get(&i.hash.name)
                    .map(|v| v.key_bytes())
                    .unwrap_or_default();
                let h = h32(&ihk) as i64;
                if h < lo || h >= hi {
                    continue;
                }
            }
            scanned += 1;
            bytes += item_size(&item);
            last = Some(last_key(&t, ixr, &item));
            if let Some(kc) = &key_cond {
                if let Some((n, rc)) = &kc.range {
                    if !item.get(n).is_some_and(|v| range_holds(rc, v)) {
                        continue;
                    }
                }
            }
            if let Some(f) = &filter {
                if !eval(f, &item) {
                    continue;
                }
            }
            count += 1;
            if select != "COUNT" {
                // A local index fetches what it does not project from the table.
                let item = match ixr {
                    Some(i) if i.global || select == "ALL_PROJECTED_ATTRIBUTES" => {
                        index_projection(&t, i, &item)
                    }
                    _ => item,
                };
                let item = match &proj {
                    Some(p) => project(&item, p),
                    None => item,
                };
                items.push(item_to_json(&item));
            }
        }
        // A page stopped by Limit reports where it stopped even at the end.
        if !more && limit.is_some_and(|l| scanned >= l) {
            more = true;
        }
        Ok((items, count, scanned, bytes, if more { last } else { None }))
    })?;
    let (items, count, scanned, bytes, lek) = result;
    let mut out = json!({"Count": count, "ScannedCount": scanned});
    if select != "COUNT" {
        out["Items"] = Value::Array(items);
    }
    if let Some(k) = lek {
        out["LastEvaluatedKey"] = item_to_json(&k);
    }
    if let Some(c) = capacity(req, &t, read_units(bytes, consistent)) {
        out["ConsumedCapacity"] = c;
    }
    Ok(out)
}

fn legacy_key_conditions(
    m: &Map<String, Value>,
    hash: &KeyAttr,
    range: Option<&KeyAttr>,
) -> Result<KeyCond, ApiError> {
    let mut hv = None;
    let mut rc = None;
    for (name, spec) in m {
        let list: Vec<AttrValue> = spec
            .get("AttributeValueList")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .map(AttrValue::from_json)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(validation)?
            .unwrap_or_default();
        let op = s(spec, "ComparisonOperator").unwrap_or("");
        let a = |i: usize| {
            list.get(i).cloned().ok_or_else(|| {
                validation(format!("One or more parameter values were invalid: Invalid number of argument(s) for the {op} ComparisonOperator"))
            })
        };
        let c = match op {
            "EQ" => RangeCond::Cmp(CmpOp::Eq, a(0)?),
            "LT" => RangeCond::Cmp(CmpOp::Lt, a(0)?),
            "LE" => RangeCond::Cmp(CmpOp::Le, a(0)?),
            "GT" => RangeCond::Cmp(CmpOp::Gt, a(0)?),
            "GE" => RangeCond::Cmp(CmpOp::Ge, a(0)?),
            "BETWEEN" => RangeCond::Between(a(0)?, a(1)?),
            "BEGINS_WITH" => RangeCond::BeginsWith(a(0)?),
            _ => {
                return Err(validation(format!(
                    "One or more parameter values were invalid: Unsupported operator on KeyCondition: {op}"
                )))
            }
        };
        if *name == hash.name {
            match c {
                RangeCond::Cmp(CmpOp::Eq, v) => hv = Some(v),
                _ => return Err(validation("Query key condition not supported")),
            }
        } else if range.is_some_and(|r| r.name == *name) {
            rc = Some((name.clone(), c));
        } else {
            return Err(validation("Query condition missed key schema element"));
        }
    }
    let hash_v = hv.ok_or_else(|| {
        validation(format!(
            "Query condition missed key schema element: {}",
            hash.name
        ))
    })?;
    Ok(KeyCond {
        hash_name: hash.name.clone(),
        hash: hash_v,
        range: rc,
    })
}

// ---- batches and transactions ---------------------------------------------

fn key_id(t: &TableMeta, key: &Item) -> (String, Vec<u8>, Vec<u8>) {
    let (h, r) = row_key(t, key);
    (t.name.clone(), h, r)
}

/// The most item bytes one `BatchGetItem` answer holds (16 MB).
const BATCH_GET_MAX_BYTES: usize = 16 * 1024 * 1024;

fn batch_get(store: &Store, req: &Value) -> R {
    let ri = req
        .get("RequestItems")
        .and_then(Value::as_object)
        .ok_or_else(|| validation("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null"))?;
    let total: usize = ri
        .values()
        .map(|v| {
            v.get("Keys")
                .and_then(Value::as_array)
                .map_or(0, |a| a.len())
        })
        .sum();
    if total > 100 {
        return Err(validation(
            "Too many items requested for the BatchGetItem call",
        ));
    }
    let mut plan = Vec::new();
    for (name, spec) in ri {
        let t = table_for_item(store, name)?;
        let mut params = Params::from_request(spec).map_err(validation)?;
        let proj = read_projection(spec, &mut params)?;
        check_params(spec, &params)?;
        let keys = spec
            .get("Keys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if keys.is_empty() {
            return Err(validation("1 validation error detected: Value at 'requestItems.keys' failed to satisfy constraint: Member must have length greater than or equal to 1"));
        }
        let mut seen = std::collections::HashSet::new();
        let mut ks = Vec::new();
        for k in keys {
            let k = item_from_json(&k).map_err(validation)?;
            check_key(&t, &k)?;
            if !seen.insert(key_id(&t, &k)) {
                return Err(validation("Provided list of item keys contains duplicates"));
            }
            ks.push(k);
        }
        plan.push((t, proj, ks, spec.clone()));
    }
    let mut responses = Map::new();
    let mut unprocessed = Map::new();
    // The response holds at most 16 MB of items; the keys of those that would
    // take it past stay unprocessed (as DynamoDB answers), and so does every
    // key after the first that did not fit.
    let mut bytes = 0usize;
    let mut full = false;
    let mut caps = Vec::new();
    store.read(|c| -> Result<(), ApiError> {
        for (t, proj, keys, spec) in &plan {
            let mut got = Vec::new();
            let mut left = Vec::new();
            let mut size = 0;
            for k in keys {
                if full {
                    left.push(item_to_json(k));
                    continue;
                }
                if let Some(i) = get_item(c, t, k)? {
                    let i = match proj {
                        Some(p) => project(&i, p),
                        None => i,
                    };
                    let n = item_size(&i);
                    if bytes + n > BATCH_GET_MAX_BYTES {
                        full = true;
                        left.push(item_to_json(k));
                        continue;
                    }
                    bytes += n;
                    size += n;
                    got.push(item_to_json(&i));
                }
            }
            responses.insert(t.name.clone(), Value::Array(got));
            if !left.is_empty() {
                let mut s = spec.clone();
                s["Keys"] = Value::Array(left);
                unprocessed.insert(t.name.clone(), s);
            }
            if let Some(cap) = capacity(req, t, read_units(size, false)) {
                caps.push(cap);
            }
        }
        Ok(())
    })?;
    let mut out = json!({"Responses": responses, "UnprocessedKeys": unprocessed});
    if !caps.is_empty() {
        out["ConsumedCapacity"] = Value::Array(caps);
    }
    Ok(out)
}

fn batch_write(store: &Store, req: &Value) -> R {
    let ri = req
        .get("RequestItems")
        .and_then(Value::as_object)
        .ok_or_else(|| validation("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null"))?;
    let total: usize = ri
        .values()
        .map(|v| v.as_array().map_or(0, |a| a.len()))
        .sum();
    if total > 25 {
        return Err(validation(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 25, Member must have length greater than or equal to 1]",
        ));
    }
    let mut plan: Vec<(std::sync::Arc<TableMeta>, Item, Option<Item>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, reqs) in ri {
        let t = table_for_item(store, name)?;
        for r in reqs.as_array().cloned().unwrap_or_default() {
            let (key, item) = if let Some(p) = r.get("PutRequest") {
                let item = parse_item_field(p, "Item")?;
                check_item(&t, &item)?;
                (t.key_of(&item), Some(item))
            } else if let Some(d) = r.get("DeleteRequest") {
                let key = parse_item_field(d, "Key")?;
                check_key(&t, &key)?;
                (key, None)
            } else {
                return Err(validation("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"));
            };
            if !seen.insert(key_id(&t, &key)) {
                return Err(validation("Provided list of item keys contains duplicates"));
            }
            plan.push((t.clone(), key, item));
        }
    }
    store.write(|tx| -> Result<(), ApiError> {
        for (t, key, item) in &plan {
            let old = tx.get(t, key)?;
            if old.is_none() && item.is_none() {
                continue;
            }
            tx.put(t, key, old.as_ref(), item.as_ref(), None)?;
        }
        Ok(())
    })?;
    Ok(json!({"UnprocessedItems": {}}))
}

fn transact_get(store: &Store, req: &Value) -> R {
    let items = req
        .get("TransactItems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() || items.len() > 100 {
        return Err(validation(format!(
            "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length {} 100",
            if items.is_empty() { "greater than or equal to 1, less than or equal to" } else { "less than or equal to" }
        )));
    }
    let mut plan = Vec::new();
    for it in &items {
        let g = it
            .get("Get")
            .ok_or_else(|| validation("1 validation error detected: Value null at 'transactItems.1.member.get' failed to satisfy constraint: Member must not be null"))?;
        let t = table_for_item(store, s(g, "TableName").unwrap_or_default())?;
        let key = parse_item_field(g, "Key")?;
        check_key(&t, &key)?;
        let mut params = Params::from_request(g).map_err(validation)?;
        let proj = read_projection(g, &mut params)?;
        check_params(g, &params)?;
        plan.push((t, key, proj));
    }
    let responses = store.read(|c| -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        for (t, key, proj) in &plan {
            match get_item(c, t, key)? {
                Some(i) => {
                    let i = match proj {
                        Some(p) => project(&i, p),
                        None => i,
                    };
                    out.push(json!({"Item": item_to_json(&i)}));
                }
                None => out.push(json!({})),
            }
        }
        Ok(out)
    })?;
    Ok(json!({"Responses": responses}))
}

enum TxAction {
    Check,
    Put(Item),
    Delete,
    Update(Vec<UpdateAction>),
}

struct TxItem {
    t: std::sync::Arc<TableMeta>,
    key: Item,
    cond: Option<Cond>,
    action: TxAction,
    all_old_on_fail: bool,
}

fn transact_write(store: &Store, req: &Value) -> R {
    let items = req
        .get("TransactItems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() || items.len() > 100 {
        return Err(validation(format!(
            "1 validation error detected: Value '{}' at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100",
            items.len()
        )));
    }
    let token = s(req, "ClientRequestToken").map(String::from);
    let digest = {
        use sha2::Digest;
        let mut r = req.clone();
        if let Some(o) = r.as_object_mut() {
            o.remove("ClientRequestToken");
            o.remove("ReturnConsumedCapacity");
        }
        hex_digest(&sha2::Sha256::digest(r.to_string().as_bytes()))
    };
    let mut plan = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for it in &items {
        let (kind, body) = ["ConditionCheck", "Put", "Delete", "Update"]
            .iter()
            .find_map(|k| it.get(*k).map(|b| (*k, b)))
            .ok_or_else(|| {
                validation("TransactItems can only contain one of Check, Put, Update or Delete")
            })?;
        let t = table_for_item(store, s(body, "TableName").unwrap_or_default())?;
        let mut params = Params::from_request(body).map_err(validation)?;
        let (key, action) = match kind {
            "Put" => {
                let item = parse_item_field(body, "Item")?;
                check_item(&t, &item)?;
                (t.key_of(&item), TxAction::Put(item))
            }
            _ => {
                let key = parse_item_field(body, "Key")?;
                check_key(&t, &key)?;
                let action = match kind {
                    "Delete" => TxAction::Delete,
                    "ConditionCheck" => TxAction::Check,
                    _ => {
                        let u = s(body, "UpdateExpression").ok_or_else(|| {
                            validation("1 validation error detected: Value null at 'transactItems.1.member.update.updateExpression' failed to satisfy constraint: Member must not be null")
                        })?;
                        let acts = parse_update(u, &mut params).map_err(validation)?;
                        let touched = touched_attributes(&acts);
                        for k in t.key_names() {
                            if touched.contains(k) {
                                return Err(validation(format!(
                                    "One or more parameter values were invalid: Cannot update attribute {k}. This attribute is part of the key"
                                )));
                            }
                        }
                        TxAction::Update(acts)
                    }
                };
                (key, action)
            }
        };
        let cond = match s(body, "ConditionExpression") {
            Some(c) => Some(parse_condition(c, &mut params, "ConditionExpression").map_err(validation)?),
            None if kind == "ConditionCheck" => {
                return Err(validation("1 validation error detected: Value null at 'transactItems.1.member.conditionCheck.conditionExpression' failed to satisfy constraint: Member must not be null"))
            }
            None => None,
        };
        check_params(body, &params)?;
        if !seen.insert(key_id(&t, &key)) {
            return Err(validation(
                "Transaction request cannot include multiple operations on one item",
            ));
        }
        plan.push(TxItem {
            t,
            key,
            cond,
            action,
            all_old_on_fail: s(body, "ReturnValuesOnConditionCheckFailure") == Some("ALL_OLD"),
        });
    }
    let now = nimbus_core::now_ms();
    store.write(|tx| -> Result<(), ApiError> {
        if let Some(tok) = &token {
            tx.tx.execute(
                "DELETE FROM tx_tokens WHERE created_ms < ?1",
                [now - 10 * 60 * 1000],
            )?;
            let prev: Option<String> = tx
                .tx
                .query_row("SELECT digest FROM tx_tokens WHERE token = ?1", [tok], |r| r.get(0))
                .ok();
            match prev {
                Some(d) if d == digest => return Ok(()),
                Some(_) => {
                    return Err(ApiError::new(
                        400,
                        "IdempotentParameterMismatchException",
                        "Specified idempotency token has been used with different parameters",
                    ))
                }
                None => {}
            }
        }
        let mut reasons = Vec::new();
        let mut failed = false;
        let mut writes = Vec::new();
        for p in &plan {
            let old = tx.get(&p.t, &p.key)?;
            let ok = p
                .cond
                .as_ref()
                .is_none_or(|c| eval(c, old.as_ref().unwrap_or(&Item::new())));
            if !ok {
                failed = true;
                let mut r = json!({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"});
                if p.all_old_on_fail {
                    if let Some(o) = &old {
                        r["Item"] = item_to_json(o);
                    }
                }
                reasons.push(r);
                continue;
            }
            let new = match &p.action {
                TxAction::Check => {
                    reasons.push(json!({"Code": "None"}));
                    continue;
                }
                TxAction::Put(i) => Some(i.clone()),
                TxAction::Delete => None,
                TxAction::Update(acts) => {
                    let base = old.clone().unwrap_or_else(|| p.key.clone());
                    match apply_update(&base, acts) {
                        Ok(n) => match check_item(&p.t, &n) {
                            Ok(()) => Some(n),
                            Err(e) => {
                                failed = true;
                                reasons.push(json!({"Code": "ValidationError", "Message": e.message}));
                                continue;
                            }
                        },
                        Err(e) => {
                            failed = true;
                            reasons.push(json!({"Code": "ValidationError", "Message": e}));
                            continue;
                        }
                    }
                }
            };
            reasons.push(json!({"Code": "None"}));
            writes.push((p, old, new));
        }
        if failed {
            let codes: Vec<&str> = reasons
                .iter()
                .map(|r| r["Code"].as_str().unwrap_or("None"))
                .collect();
            let mut e = ApiError::new(
                400,
                "TransactionCanceledException",
                format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    codes.join(", ")
                ),
            );
            e.extra.insert("CancellationReasons".into(), Value::Array(reasons));
            return Err(e);
        }
        for (p, old, new) in writes {
            if old.is_none() && new.is_none() {
                continue;
            }
            tx.put(&p.t, &p.key, old.as_ref(), new.as_ref(), None)?;
        }
        if let Some(tok) = &token {
            tx.tx.execute(
                "INSERT OR REPLACE INTO tx_tokens(token, digest, created_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![tok, digest, now],
            )?;
        }
        Ok(())
    })?;
    Ok(json!({}))
}

fn hex_digest(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Stream records of `arn` after row id `after`, up to `limit` (for the Streams API).
pub fn read_records(
    store: &Store,
    arn: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, Value)>, ApiError> {
    store.read(|c| -> Result<_, ApiError> {
        let mut st = c.prepare(
            "SELECT seq, record FROM stream_records WHERE stream_arn = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st
            .query_map(rusqlite::params![arn, after, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows
            .into_iter()
            .map(|(seq, rec)| (seq, finish_record(seq, &rec)))
            .collect())
    })
}
