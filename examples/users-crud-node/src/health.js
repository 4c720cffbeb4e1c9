'use strict';
// GET /health: which function serves the users, as the template's !Ref/!GetAtt resolved it.
exports.handler = async () => ({
  statusCode: 200,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    status: 'ok',
    stage: process.env.STAGE,
    usersFunction: process.env.USERS_FUNCTION,
    usersFunctionArn: process.env.USERS_FUNCTION_ARN,
  }),
});
