// The mobile BFF: a small card (one image, a boolean), cacheable.
const { product, price, json } = require('./catalog');

exports.handler = async (event) => {
  const p = product(event.pathParameters.id);
  if (!p) return json(404, { message: 'no such product' });
  return json(
    200,
    { id: p.id, name: p.name, price: price(p.priceCents).amount, image: p.images[0], inStock: p.stock > 0 },
    { 'cache-control': 'max-age=60' },
  );
};
