// The AWS SDK for JavaScript v3 (@aws-sdk/client-sns, from sdk/node_modules)
// against Nimbus's SNS mobile push, SMS and data-protection operations.
// Prints one JSON line with what it saw; tests/e2e/test_sns_platform.py checks it.
//
//   node sns_platform_js.js <endpoint-url>
"use strict";

const sns = require("@aws-sdk/client-sns");

const [endpoint] = process.argv.slice(2);
const client = new sns.SNSClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "AKIDJSSDK", secretAccessKey: "secret" },
  maxAttempts: 1,
});

async function error(fn) {
  try {
    await fn();
    return "no error";
  } catch (e) {
    return `${e.name}: ${e.message}`;
  }
}

async function main() {
  const out = {};
  const app = await client.send(new sns.CreatePlatformApplicationCommand({
    Name: "js-app", Platform: "APNS_SANDBOX",
    Attributes: { PlatformCredential: "key", PlatformPrincipal: "principal" },
  }));
  out.app = app.PlatformApplicationArn;
  const appAttrs = await client.send(new sns.GetPlatformApplicationAttributesCommand({
    PlatformApplicationArn: app.PlatformApplicationArn,
  }));
  out.appAttrs = appAttrs.Attributes;
  const ep = await client.send(new sns.CreatePlatformEndpointCommand({
    PlatformApplicationArn: app.PlatformApplicationArn, Token: "js-device", CustomUserData: "js",
  }));
  out.endpoint = ep.EndpointArn;
  const pub = await client.send(new sns.PublishCommand({
    TargetArn: ep.EndpointArn, MessageStructure: "json",
    Message: JSON.stringify({ default: "d", APNS_SANDBOX: '{"aps":{"alert":"hi"}}' }),
  }));
  out.messageId = pub.MessageId;
  const eps = await client.send(new sns.ListEndpointsByPlatformApplicationCommand({
    PlatformApplicationArn: app.PlatformApplicationArn,
  }));
  out.endpoints = eps.Endpoints;
  out.conflict = await error(() => client.send(new sns.CreatePlatformEndpointCommand({
    PlatformApplicationArn: app.PlatformApplicationArn, Token: "js-device", CustomUserData: "other",
  })));
  out.missing = await error(() => client.send(new sns.GetEndpointAttributesCommand({
    EndpointArn: ep.EndpointArn + "0",
  })));
  const opted = await client.send(new sns.CheckIfPhoneNumberIsOptedOutCommand({
    phoneNumber: "+15555550400",
  }));
  out.optedOut = opted.isOptedOut;
  const sandbox = await client.send(new sns.GetSMSSandboxAccountStatusCommand({}));
  out.inSandbox = sandbox.IsInSandbox;
  const { TopicArn } = await client.send(new sns.CreateTopicCommand({ Name: "js-protected" }));
  await client.send(new sns.PutDataProtectionPolicyCommand({
    ResourceArn: TopicArn, DataProtectionPolicy: '{"Name":"js"}',
  }));
  const dp = await client.send(new sns.GetDataProtectionPolicyCommand({ ResourceArn: TopicArn }));
  out.dataProtection = dp.DataProtectionPolicy;
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
