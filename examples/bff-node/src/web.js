// The web BFF: everything the product page renders in one response.
const { product, price, json } = require('./catalog');

exports.handler = async (event) => {
  const p = product(event.pathParameters.id);
  if (!p) return json(404, { message: 'no such product' });
  const stars = p.reviews.map((r) => r.stars);
  return json(200, {
    id: p.id,
    name: p.name,
    description: p.description,
    price: price(p.priceCents),
    images: p.images,
    availability: p.stock > 0 ? `${p.stock} in stock` : 'out of stock',
    rating: stars.length ? stars.reduce((a, b) => a + b, 0) / stars.length : null,
    reviews: p.reviews,
    related: p.related.map((id) => ({ id, name: product(id).name })),
  });
};
