-- The demo district's shape for the PostgreSQL peer of the order benchmark.
CREATE TABLE stock (
    fridge_id int NOT NULL,
    meal_id int NOT NULL,
    available int NOT NULL CHECK (available >= 0),
    PRIMARY KEY (fridge_id, meal_id)
);
CREATE TABLE orders (
    order_id bigserial PRIMARY KEY,
    fridge_id int NOT NULL,
    meal_id int NOT NULL,
    units int NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE events (
    seq bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders,
    kind text NOT NULL,
    body jsonb NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO stock SELECT f, m, 10000 FROM generate_series(1, 12) f, generate_series(1, 30) m;
