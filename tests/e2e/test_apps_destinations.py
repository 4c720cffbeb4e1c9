"""Async-invocation destinations and dead-letter queues from manifests (issue 18),
with the real CLI and binary: serverless.yml `destinations` to the app's own queue
and topic (`{type, arn: {Fn::GetAtt|Ref}}`), SAM `EventInvokeConfig` to an
EventBridge bus and `DeadLetterQueue` to a queue. A failing async invoke lands
its record in the manifest's queue; a successful one reaches the topic."""

import json

import boto3
from botocore.config import Config

from conftest import wait_for

HANDLER = """
def main(event, context):
    if event.get("fail"):
        raise RuntimeError("boom " + str(event.get("n")))
    return {"ok": event.get("n")}
"""


def clients(server):
    kw = dict(endpoint_url=server.api, region_name="us-east-1", aws_access_key_id="AKIDDEST",
              aws_secret_access_key="secret", config=Config(retries={"total_max_attempts": 1}))
    return boto3.client("sqs", **kw), boto3.client("lambda", **kw)


def write_app(d, name, manifest):
    d.mkdir(parents=True, exist_ok=True)
    (d / "handler.py").write_text(HANDLER)
    (d / name).write_text(manifest)
    return d


def outputs(server, app):
    return server.session.get(f"{server.api}/_nimbus/apps/{app}", timeout=10).json()["Outputs"]


def receive(sqs, url, want=1):
    got = []

    def more():
        for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(got) >= want

    wait_for(more, timeout=60, what=f"{want} message(s) in {url}")
    return got


SLS = """service: dest
provider:
  name: aws
  runtime: python3.12
functions:
  work:
    handler: handler.main
    maximumRetryAttempts: 0
    destinations:
      onFailure:
        type: sqs
        arn:
          Fn::GetAtt: [Failures, Arn]
      onSuccess:
        type: sns
        arn:
          Ref: Done
  dlq:
    handler: handler.main
    maximumRetryAttempts: 0
    onError:
      Fn::GetAtt: [Dead, Arn]
resources:
  Resources:
    Dead:
      Type: AWS::SQS::Queue
    Failures:
      Type: AWS::SQS::Queue
    Successes:
      Type: AWS::SQS::Queue
    Done:
      Type: AWS::SNS::Topic
    DoneToQueue:
      Type: AWS::SNS::Subscription
      Properties:
        TopicArn: !Ref Done
        Protocol: sqs
        Endpoint: !GetAtt Successes.Arn
        RawMessageDelivery: true
  Outputs:
    DeadUrl:
      Value: !Ref Dead
    FailuresUrl:
      Value: !Ref Failures
    SuccessesUrl:
      Value: !Ref Successes
"""


def test_serverless_yml_destinations_to_the_apps_queue_and_topic(server, tmp_path):
    sqs, lam = clients(server)
    d = write_app(tmp_path / "dest", "serverless.yml", SLS)
    p = server.cli("deploy", cwd=d, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    out = outputs(server, "dest-dev")
    cfg = lam.get_function_event_invoke_config(FunctionName="dest-dev-work")
    assert cfg["MaximumRetryAttempts"] == 0
    assert cfg["DestinationConfig"]["OnFailure"]["Destination"].endswith(":" + out["FailuresUrl"].rsplit("/", 1)[1])

    lam.invoke(FunctionName="dest-dev-work", InvocationType="Event", Payload=json.dumps({"fail": True, "n": 1}))
    [m] = receive(sqs, out["FailuresUrl"])
    record = json.loads(m["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"fail": True, "n": 1}
    assert "boom 1" in json.dumps(record["responsePayload"])

    lam.invoke(FunctionName="dest-dev-work", InvocationType="Event", Payload=json.dumps({"n": 2}))
    [m] = receive(sqs, out["SuccessesUrl"])
    record = json.loads(m["Body"])
    assert record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == {"ok": 2}

    # `onError`: the dead-letter queue gets the failed event itself.
    assert lam.get_function_configuration(FunctionName="dest-dev-dlq")["DeadLetterConfig"]["TargetArn"]
    lam.invoke(FunctionName="dest-dev-dlq", InvocationType="Event", Payload=json.dumps({"fail": True, "n": 9}))
    [m] = receive(sqs, out["DeadUrl"])
    assert json.loads(m["Body"]) == {"fail": True, "n": 9}

    # Redeploy unchanged: the engine keeps the settings (nothing deleted them).
    p = server.cli("deploy", cwd=d, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert lam.get_function_event_invoke_config(FunctionName="dest-dev-work")["DestinationConfig"]["OnSuccess"]

    # Dropping the destinations removes the async settings with the resource.
    plain = SLS.split("    maximumRetryAttempts: 0")[0] + "  dlq:" + SLS.split("  dlq:")[1]
    write_app(d, "serverless.yml", plain)
    p = server.cli("deploy", cwd=d, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    try:
        lam.get_function_event_invoke_config(FunctionName="dest-dev-work")
        assert False, "the event-invoke config is still there"
    except lam.exceptions.ResourceNotFoundException:
        pass
    assert server.cli("app", "rm", "dest-dev").returncode == 0


SAM = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    CodeUri: .
    Handler: handler.main
Resources:
  Dlq:
    Type: AWS::SQS::Queue
  Seen:
    Type: AWS::SQS::Queue
  Bus:
    Type: AWS::Events::EventBus
  Failed:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref Bus
      EventPattern:
        source: [lambda]
        detail-type: [Lambda Function Invocation Result - Failure]
      Targets:
        - Id: seen
          Arn: !GetAtt Seen.Arn
  WithDlq:
    Type: AWS::Serverless::Function
    Properties:
      DeadLetterQueue:
        Type: SQS
        TargetArn: !GetAtt Dlq.Arn
      EventInvokeConfig:
        MaximumRetryAttempts: 0
  ToBus:
    Type: AWS::Serverless::Function
    Properties:
      EventInvokeConfig:
        MaximumRetryAttempts: 0
        DestinationConfig:
          OnFailure:
            Type: EventBridge
            Destination: !GetAtt Bus.Arn
Outputs:
  DlqUrl:
    Value: !Ref Dlq
  SeenUrl:
    Value: !Ref Seen
"""


def test_sam_dead_letter_queue_and_eventbridge_destination(server, tmp_path):
    sqs, lam = clients(server)
    d = write_app(tmp_path / "samdest", "template.yaml", SAM)
    p = server.cli("deploy", cwd=d, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    out = outputs(server, "samdest")
    conf = lam.get_function_configuration(FunctionName="samdest-WithDlq")
    assert conf["DeadLetterConfig"]["TargetArn"].endswith(":" + out["DlqUrl"].rsplit("/", 1)[1])

    lam.invoke(FunctionName="samdest-WithDlq", InvocationType="Event", Payload=json.dumps({"fail": True, "n": 3}))
    [m] = receive(sqs, out["DlqUrl"])
    assert json.loads(m["Body"]) == {"fail": True, "n": 3}

    lam.invoke(FunctionName="samdest-ToBus", InvocationType="Event", Payload=json.dumps({"fail": True, "n": 4}))
    [m] = receive(sqs, out["SeenUrl"])
    event = json.loads(m["Body"])
    assert event["source"] == "lambda"
    assert event["detail"]["requestPayload"] == {"fail": True, "n": 4}

    p = server.cli("app", "rm", "samdest")
    assert p.returncode == 0, p.stdout + p.stderr
