"""A Lambda handler, unmodified: it runs the same on AWS Lambda and on Nimbus."""
import json


def handler(event, context):
    name = (event or {}).get("name", "world")
    print(f"request {context.aws_request_id}: {context.memory_limit_in_mb} MB, "
          f"{context.get_remaining_time_in_millis()} ms left")
    return {"statusCode": 200, "body": json.dumps({"message": f"Hello {name}"})}
