'use strict';
// A no-op: the time measured is the platform's, not the handler's. The first request
// an instance serves says so in its body, so the bench can check a cold sample was cold.
let cold = true;
exports.noop = async () => {
  const body = cold ? '{"cold":true}' : '{}';
  cold = false;
  return { statusCode: 200, body };
};
