'use strict';
// A no-op: the time measured is the platform's, not the handler's.
exports.noop = async () => ({ statusCode: 200, body: '{}' });
