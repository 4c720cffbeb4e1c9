// The AWS SDK for JavaScript v3 (@aws-sdk/client-sns, from sdk/node_modules)
// against Nimbus's SNS: create a FIFO and a standard topic, set and read
// attributes, tag, subscribe an HTTP endpoint, publish and publish a batch, list.
// Prints one JSON line with what it saw; tests/e2e/test_sns_js.py checks it.
//
//   node sns_js_sdk.js <endpoint-url> <http-subscriber-url>
"use strict";

const sns = require("@aws-sdk/client-sns");

const [endpoint, hook] = process.argv.slice(2);
const client = new sns.SNSClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "AKIDJSSDK", secretAccessKey: "secret" },
  maxAttempts: 1,
});

async function main() {
  const out = {};
  const { TopicArn } = await client.send(new sns.CreateTopicCommand({
    Name: "js-topic", Tags: [{ Key: "sdk", Value: "js" }],
  }));
  out.topic = TopicArn;
  await client.send(new sns.SetTopicAttributesCommand({
    TopicArn, AttributeName: "DisplayName", AttributeValue: "From JS",
  }));
  const attrs = await client.send(new sns.GetTopicAttributesCommand({ TopicArn }));
  out.displayName = attrs.Attributes.DisplayName;
  const tags = await client.send(new sns.ListTagsForResourceCommand({ ResourceArn: TopicArn }));
  out.tags = tags.Tags;
  const sub = await client.send(new sns.SubscribeCommand({
    TopicArn, Protocol: "http", Endpoint: hook, ReturnSubscriptionArn: true,
    Attributes: { RawMessageDelivery: "true" },
  }));
  out.subscription = sub.SubscriptionArn;
  const fifo = await client.send(new sns.CreateTopicCommand({
    Name: "js-topic.fifo", Attributes: { FifoTopic: "true", ContentBasedDeduplication: "true" },
  }));
  const p = await client.send(new sns.PublishCommand({
    TopicArn: fifo.TopicArn, Message: "fifo body", MessageGroupId: "g",
  }));
  out.fifoSequence = p.SequenceNumber;
  const batch = await client.send(new sns.PublishBatchCommand({
    TopicArn: fifo.TopicArn,
    PublishBatchRequestEntries: [
      { Id: "one", Message: "b1", MessageGroupId: "g" },
      { Id: "two", Message: "b2", MessageGroupId: "g" },
    ],
  }));
  out.batch = (batch.Successful || []).map((s) => s.Id).sort();
  const topics = await client.send(new sns.ListTopicsCommand({}));
  out.topics = topics.Topics.map((t) => t.TopicArn);
  try {
    await client.send(new sns.GetTopicAttributesCommand({ TopicArn: TopicArn + "-missing" }));
    out.missing = "no error";
  } catch (e) {
    out.missing = `${e.name}: ${e.message}`;
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
