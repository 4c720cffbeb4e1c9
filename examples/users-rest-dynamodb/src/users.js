// Users CRUD on DynamoDB with the AWS SDK v3 DocumentClient (bundled by Nimbus as
// by Lambda's nodejs20.x runtime; the endpoint comes from AWS_ENDPOINT_URL).
const { randomUUID } = require('node:crypto');
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const {
  DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand, DeleteCommand, QueryCommand, ScanCommand,
} = require('@aws-sdk/lib-dynamodb');

const db = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const TableName = process.env.USERS_TABLE;

const reply = (statusCode, body, headers = {}) => ({
  statusCode,
  headers: { 'content-type': 'application/json', ...headers },
  body: body === undefined ? '' : JSON.stringify(body),
});

function parse(event) {
  try {
    const b = JSON.parse(event.body || '');
    if (typeof b.name !== 'string' || !b.name || typeof b.email !== 'string' || !b.email.includes('@')) return null;
    return { name: b.name, email: b.email.toLowerCase() };
  } catch {
    return null;
  }
}

async function emailTaken(email, exceptId) {
  const r = await db.send(new QueryCommand({
    TableName, IndexName: 'by-email',
    KeyConditionExpression: 'email = :e', ExpressionAttributeValues: { ':e': email },
  }));
  return (r.Items || []).some((u) => u.id !== exceptId);
}

exports.handler = async (event) => {
  const [method, path] = event.routeKey.split(' ');
  const id = event.pathParameters && event.pathParameters.id;
  if (path === '/users' && method === 'GET') {
    const r = await db.send(new ScanCommand({ TableName }));
    const users = (r.Items || []).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    return reply(200, { users });
  }
  if (path === '/users' && method === 'POST') {
    const u = parse(event);
    if (!u) return reply(400, { message: 'name and a valid email are required' });
    if (await emailTaken(u.email)) return reply(409, { message: 'email already registered' });
    const user = { id: randomUUID(), ...u, createdAt: new Date().toISOString() };
    await db.send(new PutCommand({ TableName, Item: user, ConditionExpression: 'attribute_not_exists(id)' }));
    return reply(201, user, { location: `/users/${user.id}` });
  }
  if (method === 'GET') {
    const r = await db.send(new GetCommand({ TableName, Key: { id } }));
    return r.Item ? reply(200, r.Item) : reply(404, { message: 'no such user' });
  }
  if (method === 'PUT') {
    const u = parse(event);
    if (!u) return reply(400, { message: 'name and a valid email are required' });
    if (await emailTaken(u.email, id)) return reply(409, { message: 'email already registered' });
    try {
      const r = await db.send(new UpdateCommand({
        TableName, Key: { id },
        UpdateExpression: 'SET #n = :n, email = :e',
        ConditionExpression: 'attribute_exists(id)',
        ExpressionAttributeNames: { '#n': 'name' },
        ExpressionAttributeValues: { ':n': u.name, ':e': u.email },
        ReturnValues: 'ALL_NEW',
      }));
      return reply(200, r.Attributes);
    } catch (e) {
      if (e.name === 'ConditionalCheckFailedException') return reply(404, { message: 'no such user' });
      throw e;
    }
  }
  if (method === 'DELETE') {
    const r = await db.send(new DeleteCommand({ TableName, Key: { id }, ReturnValues: 'ALL_OLD' }));
    return r.Attributes ? reply(204) : reply(404, { message: 'no such user' });
  }
  return reply(405, { message: 'method not allowed' });
};
