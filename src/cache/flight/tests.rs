use super::*;

fn key(n: u8) -> Key {
    Key([n; 32])
}

#[tokio::test]
async fn concurrent_misses_make_one_call_and_all_get_its_answer() {
    let flights: Arc<Flights<String>> = Arc::default();
    let leader = match flights.join(key(1)) {
        Role::Leader(l) => l,
        Role::Follower(_) => panic!("the first request leads"),
    };
    let mut waiting = Vec::new();
    for _ in 0..10 {
        match flights.join(key(1)) {
            Role::Follower(f) => waiting.push(tokio::spawn(f.wait(Duration::from_secs(30)))),
            Role::Leader(_) => panic!("a second leader for one key"),
        }
    }
    // Another key flies on its own.
    assert!(matches!(flights.join(key(2)), Role::Leader(_)));
    leader.publish(Arc::new("the answer".to_string()));
    for w in waiting {
        assert_eq!(w.await.unwrap().as_deref().map(String::as_str), Some("the answer"));
    }
    assert_eq!(flights.in_flight(), 0, "finished flights leave the table");
}

#[tokio::test]
async fn a_leader_that_gives_up_releases_its_followers_at_once() {
    let flights: Flights<String> = Flights::default();
    let Role::Leader(leader) = flights.join(key(1)) else {
        panic!()
    };
    let Role::Follower(f) = flights.join(key(1)) else {
        panic!()
    };
    let waiter = tokio::spawn(f.wait(Duration::from_secs(3600)));
    drop(leader);
    // Released with nothing (it makes its own call), long before its bound.
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_none());
    // The next request leads a new flight.
    assert!(matches!(flights.join(key(1)), Role::Leader(_)));
}

#[tokio::test]
async fn a_follower_waits_no_longer_than_its_bound() {
    let flights: Flights<String> = Flights::default();
    let Role::Leader(_leader) = flights.join(key(1)) else {
        panic!()
    };
    let Role::Follower(f) = flights.join(key(1)) else {
        panic!()
    };
    assert!(f.wait(Duration::from_millis(20)).await.is_none());
}

#[test]
fn a_refresh_starts_only_when_no_flight_is_in_progress() {
    let flights: Flights<String> = Flights::default();
    let refresh = flights.try_lead(key(1));
    assert!(refresh.is_some());
    assert!(flights.try_lead(key(1)).is_none(), "one refresh per key at a time");
    drop(refresh);
    assert!(flights.try_lead(key(1)).is_some());
}
