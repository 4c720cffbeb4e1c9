// The shared backend both frontends read: a small in-code catalog, so the example
// needs no other service. A real app would call a product service here.
const PRODUCTS = {
  p1: {
    id: 'p1',
    name: 'Trail running shoe',
    description: 'Light shoe with a grippy sole for wet rock and mud.',
    priceCents: 12900,
    images: ['p1-front.jpg', 'p1-side.jpg', 'p1-sole.jpg'],
    stock: 14,
    reviews: [
      { stars: 5, text: 'Great grip.' },
      { stars: 4, text: 'Runs a bit small.' },
    ],
    related: ['p2'],
  },
  p2: {
    id: 'p2',
    name: 'Running socks (3 pairs)',
    description: 'Merino blend, no seams.',
    priceCents: 1900,
    images: ['p2.jpg'],
    stock: 0,
    reviews: [],
    related: ['p1'],
  },
};

exports.product = (id) => PRODUCTS[id];

exports.price = (cents) => ({
  amount: (cents / 100).toFixed(2),
  currency: process.env.CURRENCY || 'EUR',
});

exports.json = (statusCode, body, headers = {}) => ({
  statusCode,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});
