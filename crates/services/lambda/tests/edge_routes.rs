//! Every Lambda operation's HTTP binding reaches the Lambda front-end through the
//! edge's path rules, unsigned (signed requests go by their `lambda` scope).

use nimbus_svc_lambda::ops::LambdaOp;

#[test]
fn every_lambda_binding_is_routed_to_lambda() {
    let table = nimbus_edge::Table::new(vec![&nimbus_svc_lambda::META]);
    for op in LambdaOp::ALL {
        let (method, template) = op.binding();
        // `{Name}` segments filled in, a required `?key=value` kept.
        let uri: String = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/")
            .replace("{FunctionName}", "x");
        let parts = http::Request::builder()
            .method(method)
            .uri(uri.as_str())
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let route = table.classify(&parts, None);
        assert_eq!(
            route.map(|r| r.service),
            Ok("lambda"),
            "{} ({uri})",
            op.name()
        );
    }
}
