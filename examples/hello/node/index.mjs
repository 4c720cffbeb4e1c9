// An ES-module Lambda handler, unmodified: it runs the same on AWS Lambda and on Nimbus.
export const handler = async (event, context) => {
  const name = event?.name ?? "world";
  console.log(`request ${context.awsRequestId}: ${context.memoryLimitInMB} MB`);
  return { statusCode: 200, body: JSON.stringify({ message: `Hello ${name} from Node` }) };
};
