//! Issue 2: the region node foundation, seen from outside.

use larder_tests::*;
use serde_json::{json, Value};

#[tokio::test]
async fn catalog_lists_nearest_fridges_first_with_counts_and_honours_etag() {
    let node = Node::start_empty().await;
    let admin = node.admin();
    assert_eq!(
        admin
            .put_meal("m-bowl", meal_spec("Bowl", 1295))
            .await
            .status,
        200
    );
    // Three fridges at growing distance from downtown, registered out of order.
    for (id, lat, lon) in [
        ("f-far", 42.3592, -83.0660),
        ("f-near", 42.3320, -83.0470),
        ("f-mid", 42.3384, -83.0527),
    ] {
        let r = admin.put_fridge(id, fridge_spec(id, lat, lon)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(
        admin.set_stock("f-near", &[("m-bowl", 3)]).await.status,
        200
    );
    assert_eq!(admin.set_stock("f-mid", &[("m-bowl", 5)]).await.status, 200);

    let catalog = node.catalog(DOWNTOWN.0, DOWNTOWN.1, 2_000).await;
    let ids: Vec<&str> = catalog["fridges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fridge_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["f-near", "f-mid"],
        "f-far is 3.5 km away, outside 2 km"
    );
    assert_eq!(catalog["fridges"][0]["meals"][0]["available"], 3);
    assert_eq!(catalog["fridges"][1]["meals"][0]["available"], 5);
    assert_eq!(catalog["fridges"][0]["meals"][0]["price"], 1295);

    // Same query with the ETag: 304, no body.
    let path = format!(
        "/v1/catalog?lat={}&lon={}&radius_m=2000",
        DOWNTOWN.0, DOWNTOWN.1
    );
    let first = node.http.get(node.url(&path)).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let again = node
        .http
        .get(node.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    // A stock change makes the old ETag stale.
    admin.set_stock("f-near", &[("m-bowl", 2)]).await;
    let after = node
        .http
        .get(node.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn demo_district_has_a_dozen_fridges_and_thirty_meals() {
    let node = Node::start_demo().await;
    let catalog = node.catalog(DOWNTOWN.0, DOWNTOWN.1, 10_000).await;
    let fridges = catalog["fridges"].as_array().unwrap();
    assert_eq!(fridges.len(), 12);
    let distances: Vec<u64> = fridges
        .iter()
        .map(|f| f["distance_m"].as_u64().unwrap())
        .collect();
    assert!(
        distances.windows(2).all(|w| w[0] <= w[1]),
        "nearest first: {distances:?}"
    );
    let meal = node.anonymous().get("/v1/meals/m-butter-chicken").await;
    assert_eq!(meal.status, 200);
    assert_eq!(meal.body["nutrition"]["kcal"], 690);
    assert_eq!(meal.body["kitchen_id"], "k-eastern-spice");
}

#[tokio::test]
async fn every_acknowledged_write_survives_sigkill() {
    let mut node = Node::start_empty().await;
    let admin = node.admin();
    assert_eq!(
        admin
            .put_meal("m-soup", meal_spec("Soup", 795))
            .await
            .status,
        200
    );
    assert_eq!(
        admin
            .put_fridge("f-1", fridge_spec("One", 42.3316, -83.0466))
            .await
            .status,
        200
    );
    // Many concurrent writers so acknowledgements come from shared batches.
    const WRITES: u32 = 200;
    let writes = (0..WRITES).map(|i| {
        let admin = admin.clone();
        async move {
            let id = format!("m-meal-{i}");
            let r = admin
                .put_meal(&id, meal_spec(&format!("Meal {i}"), 100 + i as i64))
                .await;
            (id, r.status)
        }
    });
    let acked: Vec<String> = futures::future::join_all(writes)
        .await
        .into_iter()
        .filter(|(_, status)| *status == 200)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(acked.len(), WRITES as usize);
    let seq_before = node.log_seq().await;
    node.kill(); // Right after the acks: no graceful shutdown, no final flush.

    node.restart().await;
    assert_eq!(node.log_seq().await, seq_before);
    for id in &acked {
        let r = node.anonymous().get(&format!("/v1/meals/{id}")).await;
        assert_eq!(r.status, 200, "{id} was acknowledged and then lost");
    }
}

/// Cases of bad input: (method, path, body, token role, expected status, expected code).
#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let node = Node::start_demo().await;
    let admin = node.admin();
    let seq = node.log_seq().await;
    let catalog_before = node.catalog(DOWNTOWN.0, DOWNTOWN.1, 10_000).await;
    let meal_before = node.anonymous().get("/v1/meals/m-kale-caesar").await.body;

    let mut negative_price = meal_spec("Kale", -5);
    negative_price["price"] = json!(-5);
    let mut absurd_price = meal_spec("Kale", 1);
    absurd_price["price"] = json!(99_999_999_999i64);
    let mut bad_currency = meal_spec("Kale", 100);
    bad_currency["currency"] = json!("dollars");
    let mut zero_shelf = meal_spec("Kale", 100);
    zero_shelf["shelf_life_hours"] = json!(0);
    let mut unknown_field = meal_spec("Kale", 100);
    unknown_field["colour"] = json!("green");
    let mut wrong_type = meal_spec("Kale", 100);
    wrong_type["price"] = json!("ten dollars");
    let mut sugar_over_carbs = meal_spec("Kale", 100);
    sugar_over_carbs["nutrition"]["sugar_mg"] = json!(70_000);

    let meal_cases: Vec<(&str, Value, u16, &str)> = vec![
        ("negative price", negative_price, 422, "invalid"),
        ("absurd price", absurd_price, 422, "invalid"),
        ("bad currency", bad_currency, 422, "invalid_body"),
        ("zero shelf life", zero_shelf, 422, "invalid"),
        ("unknown field", unknown_field, 422, "invalid_body"),
        ("wrong type", wrong_type, 422, "invalid_body"),
        ("sugar over carbs", sugar_over_carbs, 422, "invalid"),
    ];
    for (what, body, status, code) in meal_cases {
        let r = admin.put_meal("m-kale-caesar", body).await;
        assert_eq!((r.status, r.code()), (status, code), "{what}: {}", r.body);
    }

    let r = admin
        .put_raw("/v1/admin/meals/m-kale-caesar", "{\"name\": ")
        .await;
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
    let r = admin.put_raw("/v1/admin/meals/m-kale-caesar", &huge).await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
    let r = admin.put_meal("bad id!", meal_spec("x", 100)).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Fridges: out of range, outside the district, too-short secret.
    let r = admin.put_fridge("f-x", fridge_spec("X", 91.0, -83.0)).await;
    assert_eq!((r.status, r.code()), (422, "invalid"));
    let r = admin
        .put_fridge("f-x", fridge_spec("Dearborn", 42.3223, -83.1763))
        .await;
    assert_eq!((r.status, r.code()), (422, "outside_district"));
    let mut short_secret = fridge_spec("X", 42.3316, -83.0466);
    short_secret["secret"] = json!("short");
    assert_eq!(admin.put_fridge("f-x", short_secret).await.status, 422);

    // Stock: unknown meal, unknown fridge, absurd units, duplicates.
    let r = admin.set_stock("f-campus-martius", &[("m-nope", 1)]).await;
    assert_eq!((r.status, r.code()), (404, "unknown_meal"));
    let r = admin.set_stock("f-nope", &[("m-kale-caesar", 1)]).await;
    assert_eq!((r.status, r.code()), (404, "unknown_fridge"));
    let r = admin
        .set_stock("f-campus-martius", &[("m-kale-caesar", 1_000_000)])
        .await;
    assert_eq!(r.status, 422);
    let r = admin
        .set_stock(
            "f-campus-martius",
            &[("m-kale-caesar", 1), ("m-kale-caesar", 2)],
        )
        .await;
    assert_eq!(r.status, 422);
    let r = admin
        .put(
            "/v1/admin/fridges/f-campus-martius/stock",
            json!({"counts": [{"meal_id": "m-kale-caesar", "units": -1}]}),
        )
        .await;
    assert_eq!(r.status, 422);

    // Queries: lat/lon out of range, radius above the limit, not numbers.
    let anon = node.anonymous();
    for q in [
        "lat=91&lon=0",
        "lat=0&lon=181",
        "lat=NaN&lon=0",
        "lat=42&lon=-83&radius_m=50001",
        "lat=42&lon=-83&radius_m=0",
        "lat=abc&lon=1",
        "lon=1",
        "lat=1&lon=1&radius_m=-5",
    ] {
        let r = anon.get(&format!("/v1/catalog?{q}")).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_query"),
            "{q}: {}",
            r.body
        );
    }
    assert_eq!(
        anon.get("/v1/locate?lat=40.71&lon=-74.0").await.code(),
        "not_served"
    );
    assert_eq!(anon.get("/v1/nowhere").await.status, 404);

    assert_eq!(node.log_seq().await, seq, "bad input appended events");
    assert_eq!(
        node.catalog(DOWNTOWN.0, DOWNTOWN.1, 10_000).await,
        catalog_before
    );
    assert_eq!(
        node.anonymous().get("/v1/meals/m-kale-caesar").await.body,
        meal_before
    );
}

#[tokio::test]
async fn tokens_are_checked_on_every_write() {
    let node = Node::start_empty().await;
    let seq = node.log_seq().await;
    let spec = meal_spec("Soup", 795);
    let anon = node.anonymous();

    let r = anon.put_meal("m-soup", spec.clone()).await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));
    let expired =
        token_with_claims(&json!({"sub": "ops", "role": "admin", "exp": unix_now() - 3600}));
    let r = anon
        .clone()
        .with_token(&expired)
        .put_meal("m-soup", spec.clone())
        .await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    let r = anon
        .clone()
        .with_token(&foreign_token("admin"))
        .put_meal("m-soup", spec.clone())
        .await;
    assert_eq!(
        (r.status, r.code()),
        (401, "invalid_token"),
        "a token signed by another key"
    );
    let mut tampered = token("customer", "c-1", &[]);
    tampered = tampered.replacen("eyJ", "eyK", 2);
    assert_eq!(
        anon.clone()
            .with_token(&tampered)
            .put_meal("m-soup", spec.clone())
            .await
            .status,
        401
    );
    for role in ["customer", "pos", "kitchen", "fridge"] {
        let r = node
            .as_role(role, "someone")
            .put_meal("m-soup", spec.clone())
            .await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{role}");
    }
    assert_eq!(node.log_seq().await, seq);

    // A kitchen may correct stock of its own meals only.
    let admin = node.admin();
    admin.put_meal("m-soup", spec).await;
    let mut other = meal_spec("Other", 500);
    other["kitchen_id"] = json!("k-other");
    admin.put_meal("m-other", other).await;
    admin
        .put_fridge("f-1", fridge_spec("One", 42.3316, -83.0466))
        .await;
    let kitchen = anon
        .clone()
        .with_token(&token("kitchen", "cook-1", &["--kitchen-id", "k-test"]));
    assert_eq!(kitchen.set_stock("f-1", &[("m-soup", 4)]).await.status, 200);
    assert_eq!(
        kitchen.set_stock("f-1", &[("m-other", 4)]).await.status,
        403
    );
}

#[tokio::test]
async fn operators_get_health_readiness_metrics_and_openapi() {
    let node = Node::start_demo().await;
    let anon = node.anonymous();
    assert_eq!(anon.get("/healthz").await.status, 200);
    let ready = anon.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["store"], "ok");
    let metrics = node
        .http
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("larder_events_appended_total"),
        "{metrics}"
    );
    assert!(metrics.contains("larder_fridges 12"), "{metrics}");
    let openapi = anon.get("/v1/openapi.json").await;
    assert_eq!(openapi.body["openapi"], "3.1.0");
    for path in [
        "/v1/catalog",
        "/v1/admin/meals/{meal_id}",
        "/v1/admin/fridges/{fridge_id}/stock",
        "/v1/locate",
    ] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "{path} undocumented"
        );
    }
    let located = anon
        .get(&format!("/v1/locate?lat={}&lon={}", DOWNTOWN.0, DOWNTOWN.1))
        .await;
    assert_eq!(located.body["district_id"], "detroit-downtown");
}

#[tokio::test]
async fn discontinued_meals_leave_the_catalog() {
    let node = Node::start_demo().await;
    let admin = node.admin();
    let before = node
        .catalog(DOWNTOWN.0, DOWNTOWN.1, 10_000)
        .await
        .to_string();
    assert!(before.contains("m-cornbread"));
    assert_eq!(
        admin.delete("/v1/admin/meals/m-cornbread").await.status,
        204
    );
    let after = node
        .catalog(DOWNTOWN.0, DOWNTOWN.1, 10_000)
        .await
        .to_string();
    assert!(!after.contains("m-cornbread"));
    assert_eq!(
        node.anonymous().get("/v1/meals/m-cornbread").await.status,
        404
    );
    assert_eq!(
        admin.delete("/v1/admin/meals/m-cornbread").await.status,
        404
    );
}

/// Ids are parsed where they enter. A URL naming something by what is no
/// id is answered as for an id that names nothing (404), or as a bad name
/// where it would create one (400 `invalid_id`); a body carrying one fails
/// to decode (422 `invalid_body`, naming the field). Nothing is recorded.
#[tokio::test]
async fn ids_that_are_not_ids_are_refused_where_they_enter() {
    let node = Node::start_demo().await;
    let seq = node.log_seq().await;
    let admin = node.admin();
    let alice = node.as_role("customer", "alice");
    let long = "x".repeat(65);

    for (path, code) in [
        ("/v1/meals/bad%20id!".to_string(), "unknown_meal"),
        (format!("/v1/meals/{long}"), "unknown_meal"),
        ("/v1/orders/not%20an%20id".to_string(), "unknown_order"),
    ] {
        let r = alice.get(&path).await;
        assert_eq!((r.status, r.code()), (404, code), "{path}: {}", r.body);
    }
    let r = admin.delete("/v1/admin/meals/bad%20id!").await;
    assert_eq!((r.status, r.code()), (404, "unknown_meal"), "{}", r.body);
    let r = alice.cancel("bad%20id!").await;
    assert_eq!((r.status, r.code()), (404, "unknown_order"), "{}", r.body);
    let r = alice.cancel_plan(&long, None).await;
    assert_eq!((r.status, r.code()), (404, "unknown_plan"), "{}", r.body);
    let r = admin
        .put_fridge(&long, fridge_spec("X", 42.3316, -83.0466))
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_id"), "{}", r.body);

    let r = alice
        .order_body(
            json!({"fridge_id": "f x", "items": [{"meal_id": "m-kale-caesar", "qty": 1}], "payment_method": "tok_visa"}),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_body"), "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("fridge_id") && message.contains("may contain only"),
        "{message}"
    );
    let r = admin.set_stock("f-campus-martius", &[("", 1)]).await;
    assert_eq!((r.status, r.code()), (422, "invalid_body"), "{}", r.body);

    assert_eq!(node.log_seq().await, seq, "nothing was recorded");
}
