-- One confirm: reserve a unit (refused if none left), insert the order,
-- append its event; one transaction, committed with synchronous_commit=on.
\set f random(1, 12)
\set m random(1, 30)
BEGIN;
UPDATE stock SET available = available - 1
    WHERE fridge_id = :f AND meal_id = :m AND available >= 1
    RETURNING available \gset
INSERT INTO orders (fridge_id, meal_id, units, status)
    VALUES (:f, :m, 1, 'paying') RETURNING order_id \gset
INSERT INTO events (order_id, kind, body)
    VALUES (:order_id, 'OrderPlaced', jsonb_build_object('fridge', :f::int, 'meal', :m::int, 'units', 1));
END;
