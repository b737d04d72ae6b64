//! The vector index port's contract, run on every adapter: Qdrant Edge always; a Qdrant server when
//! `SMB_TEST_QDRANT` names one (`http://HOST:6334`). Each test gets its own collection (and, on Edge, its
//! own directory) and removes it.

use std::sync::Arc;

use smb_search::Kind;
use smb_search::edge::EdgeIndex;
use smb_search::index::{DynIndex, Filter, Isolation, Payload, Point, Query, Space, Sparse};
use uuid::Uuid;

struct Backend {
    name: &'static str,
    open: Box<dyn Fn(Isolation) -> DynIndex>,
    _dir: Option<tempdir::Dir>,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn backends() -> Vec<Backend> {
    let dir = std::env::temp_dir().join(format!("smb-index-{}", Uuid::new_v4()));
    let d = dir.clone();
    let mut out = vec![Backend {
        name: "edge",
        open: Box::new(move |iso| Arc::new(EdgeIndex::open(&d, iso).unwrap()) as DynIndex),
        _dir: Some(tempdir::Dir(dir)),
    }];
    if let Ok(url) = std::env::var("SMB_TEST_QDRANT") {
        out.push(Backend {
            name: "qdrant",
            open: Box::new(move |iso| {
                Arc::new(smb_search::server::QdrantIndex::connect(&url, None, iso).unwrap())
                    as DynIndex
            }),
            _dir: None,
        });
    } else {
        eprintln!("SMB_TEST_QDRANT is not set: the Qdrant server adapter's contract did not run");
    }
    out
}

fn space() -> Space {
    Space {
        name: format!("contract_{}", Uuid::new_v4().simple()),
        dense_dim: Some(4),
    }
}

#[allow(clippy::too_many_arguments)]
fn point(
    tenant: &str,
    kind: Kind,
    source: &str,
    record: &str,
    terms: &[u32],
    dense: Option<[f32; 4]>,
    day: i32,
    customer: Option<&str>,
) -> Point {
    let unit = dense.map(|d| {
        let n = d.iter().map(|x| x * x).sum::<f32>().sqrt();
        d.iter().map(|x| x / n).collect::<Vec<f32>>()
    });
    Point {
        id: smb_search::doc::point_id(tenant, kind, source, record),
        payload: Payload {
            tenant_id: tenant.into(),
            kind,
            source: source.into(),
            record_id: record.into(),
            title: record.into(),
            day: Some(day),
            customer_key: customer.map(str::to_string),
            text: format!("text of {record}"),
            keywords: format!("keywords of {record}"),
            version: format!("v-{record}-{terms:?}"),
            terms: terms.to_vec(),
        },
        sparse: Sparse {
            indices: terms.to_vec(),
            values: vec![1.0; terms.len()],
        },
        dense: unit,
    }
}

fn query(tenant: &str, terms: &[u32], dense: Option<[f32; 4]>) -> Query {
    Query {
        filter: Filter {
            tenant_id: tenant.into(),
            ..Default::default()
        },
        sparse: (!terms.is_empty()).then(|| Sparse {
            indices: terms.to_vec(),
            values: vec![1.0; terms.len()],
        }),
        dense: dense.map(|d| {
            let n = d.iter().map(|x| x * x).sum::<f32>().sqrt();
            d.iter().map(|x| x / n).collect()
        }),
        dense_threshold: None,
        mmr_lambda: None,
        weights: (1.0, 1.0),
        prefetch: 50,
        limit: 10,
    }
}

fn records(hits: &[smb_search::index::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.payload.record_id.clone()).collect()
}

async fn seed(idx: &DynIndex, sp: &Space) {
    idx.ensure(sp).await.unwrap();
    idx.upsert(
        sp,
        vec![
            point(
                "ta",
                Kind::Order,
                "shopify",
                "a1",
                &[1, 2],
                Some([1.0, 0.0, 0.0, 0.0]),
                100,
                Some("ann@x.com"),
            ),
            point(
                "ta",
                Kind::Order,
                "shopify",
                "a2",
                &[2, 3],
                Some([0.0, 1.0, 0.0, 0.0]),
                200,
                Some("bob@x.com"),
            ),
            point(
                "ta",
                Kind::Customer,
                "shopify",
                "a3",
                &[4],
                None,
                150,
                Some("ann@x.com"),
            ),
            point(
                "ta",
                Kind::Charge,
                "stripe",
                "a4",
                &[1],
                Some([0.9, 0.1, 0.0, 0.0]),
                300,
                None,
            ),
            point(
                "tb",
                Kind::Order,
                "shopify",
                "b1",
                &[1, 2],
                Some([1.0, 0.0, 0.0, 0.0]),
                100,
                Some("ann@x.com"),
            ),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn keyword_dense_and_hybrid_retrieval_stay_in_the_tenant() {
    for b in backends() {
        for iso in [Isolation::Filter, Isolation::Collection] {
            let idx = (b.open)(iso);
            let sp = space();
            seed(&idx, &sp).await;
            let who = format!("{} {iso:?}", b.name);

            // Keyword: term 3 only in a2.
            let h = idx.query(&sp, &query("ta", &[3], None)).await.unwrap();
            assert_eq!(records(&h), ["a2"], "{who}");
            // Dense: nearest to axis 0 is a1, then a4 (a3 has no dense vector).
            let h = idx
                .query(&sp, &query("ta", &[], Some([1.0, 0.0, 0.0, 0.0])))
                .await
                .unwrap();
            assert_eq!(records(&h)[..2], ["a1", "a4"], "{who}");
            assert!(h[0].dense.is_some(), "{who}: the stored vector comes back");
            // Hybrid: a1 is first on both sides.
            let h = idx
                .query(&sp, &query("ta", &[1, 2], Some([1.0, 0.0, 0.0, 0.0])))
                .await
                .unwrap();
            assert_eq!(records(&h)[0], "a1", "{who}");
            assert!(
                records(&h).iter().all(|r| r.starts_with('a')),
                "{who}: {h:?}"
            );
            // Tenant b sees only its own point, with the very same vectors.
            let h = idx
                .query(&sp, &query("tb", &[1, 2, 3, 4], Some([1.0, 0.0, 0.0, 0.0])))
                .await
                .unwrap();
            assert_eq!(records(&h), ["b1"], "{who}");
            // An unknown tenant sees nothing.
            let h = idx
                .query(&sp, &query("tz", &[1, 2, 3, 4], Some([1.0, 0.0, 0.0, 0.0])))
                .await
                .unwrap();
            assert!(h.is_empty(), "{who}");
            assert_eq!(idx.count(&sp, "ta").await.unwrap(), 4, "{who}");
            assert_eq!(idx.count(&sp, "tb").await.unwrap(), 1, "{who}");
            // Document frequencies are per tenant: term 1 is in a1 and a4 (and b1, not counted).
            assert_eq!(idx.count_term(&sp, "ta", 1).await.unwrap(), 2, "{who}");
            assert_eq!(idx.count_term(&sp, "tb", 1).await.unwrap(), 1, "{who}");
            assert_eq!(idx.count_term(&sp, "ta", 77).await.unwrap(), 0, "{who}");
            idx.drop_space(&sp).await.unwrap();
        }
    }
}

#[tokio::test]
async fn filters_narrow_by_kind_source_customer_and_date() {
    for b in backends() {
        let idx = (b.open)(Isolation::Filter);
        let sp = space();
        seed(&idx, &sp).await;
        let base = query("ta", &[1, 2, 3, 4], None);
        let run = |f: Filter| {
            let mut q = base.clone();
            q.filter = f;
            let idx = idx.clone();
            let sp = sp.clone();
            async move {
                let mut r = records(&idx.query(&sp, &q).await.unwrap());
                r.sort();
                r
            }
        };
        let t = || Filter {
            tenant_id: "ta".into(),
            ..Default::default()
        };
        assert_eq!(
            run(Filter {
                kinds: vec![Kind::Customer],
                ..t()
            })
            .await,
            ["a3"],
            "{}",
            b.name
        );
        assert_eq!(
            run(Filter {
                kinds: vec![Kind::Order, Kind::Charge],
                ..t()
            })
            .await,
            ["a1", "a2", "a4"]
        );
        assert_eq!(
            run(Filter {
                sources: vec!["stripe".into()],
                ..t()
            })
            .await,
            ["a4"]
        );
        assert_eq!(
            run(Filter {
                customer_key: Some("ann@x.com".into()),
                ..t()
            })
            .await,
            ["a1", "a3"]
        );
        assert_eq!(
            run(Filter {
                days: Some((150, 250)),
                ..t()
            })
            .await,
            ["a2", "a3"]
        );
        idx.drop_space(&sp).await.unwrap();
    }
}

#[tokio::test]
async fn upserts_replace_deletes_remove_and_never_cross_tenants() {
    for b in backends() {
        let idx = (b.open)(Isolation::Filter);
        let sp = space();
        seed(&idx, &sp).await;
        let a1 = smb_search::doc::point_id("ta", Kind::Order, "shopify", "a1");
        let b1 = smb_search::doc::point_id("tb", Kind::Order, "shopify", "b1");
        // Versions are per tenant: tenant b cannot read a's.
        let v = idx.versions(&sp, "ta", &[a1, b1]).await.unwrap();
        assert_eq!(v.len(), 1, "{}", b.name);
        assert!(v.contains_key(&a1));
        // Counts (kept between writes by the embedded index) follow every write.
        let term = |t: u32| {
            let (idx, sp) = (idx.clone(), sp.clone());
            async move { idx.count_term(&sp, "ta", t).await.unwrap() }
        };
        assert_eq!((term(1).await, term(9).await), (2, 0), "{}", b.name);
        // Same record again with other words: replaced, not duplicated.
        idx.upsert(
            &sp,
            vec![point(
                "ta",
                Kind::Order,
                "shopify",
                "a1",
                &[9],
                None,
                100,
                None,
            )],
        )
        .await
        .unwrap();
        assert_eq!(idx.count(&sp, "ta").await.unwrap(), 4);
        assert_eq!((term(1).await, term(9).await), (1, 1), "{}", b.name);
        assert_eq!(
            records(&idx.query(&sp, &query("ta", &[9], None)).await.unwrap()),
            ["a1"]
        );
        assert!(
            !records(&idx.query(&sp, &query("ta", &[1], None)).await.unwrap())
                .contains(&"a1".to_string()),
            "{}: the old words still find a1",
            b.name
        );
        // Tenant b deleting a's id deletes nothing.
        idx.delete(&sp, "tb", &[a1]).await.unwrap();
        assert_eq!(idx.count(&sp, "ta").await.unwrap(), 4, "{}", b.name);
        // The owner's delete removes it.
        idx.delete(&sp, "ta", &[a1]).await.unwrap();
        assert_eq!(idx.count(&sp, "ta").await.unwrap(), 3);
        assert_eq!((term(1).await, term(9).await), (1, 0), "{}", b.name);
        assert!(
            idx.query(&sp, &query("ta", &[9], None))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(idx.count(&sp, "tb").await.unwrap(), 1);
        idx.drop_space(&sp).await.unwrap();
        assert_eq!(idx.count(&sp, "ta").await.unwrap(), 0);
        // Made again under the same name and written as many times as the last count saw (seed, a1,
        // its delete): nothing counted before the drop answers for it.
        idx.ensure(&sp).await.unwrap();
        for _ in 0..3 {
            let a5 = point("ta", Kind::Order, "shopify", "a5", &[1], None, 100, None);
            idx.upsert(&sp, vec![a5]).await.unwrap();
        }
        assert_eq!(idx.count(&sp, "ta").await.unwrap(), 1, "{}", b.name);
        assert_eq!(term(1).await, 1, "{}", b.name);
        idx.drop_space(&sp).await.unwrap();
    }
}

#[tokio::test]
async fn the_edge_index_persists_across_restarts() {
    let dir = std::env::temp_dir().join(format!("smb-index-{}", Uuid::new_v4()));
    let _guard = tempdir::Dir(dir.clone());
    let sp = space();
    {
        let idx: DynIndex = Arc::new(EdgeIndex::open(&dir, Isolation::Filter).unwrap());
        seed(&idx, &sp).await;
        idx.flush(&sp).await.unwrap();
    }
    let idx: DynIndex = Arc::new(EdgeIndex::open(&dir, Isolation::Filter).unwrap());
    assert_eq!(idx.count(&sp, "ta").await.unwrap(), 4);
    assert_eq!(
        records(&idx.query(&sp, &query("ta", &[3], None)).await.unwrap()),
        ["a2"]
    );
}

/// Writes that outgrow the appendable segment are moved into optimised segments (indexes on disk) as they
/// come; nothing is lost or doubled on the way, filters and word counts still hold, and it all reopens.
#[tokio::test]
async fn the_edge_index_optimises_as_it_grows_and_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("smb-index-{}", Uuid::new_v4()));
    let _guard = tempdir::Dir(dir.clone());
    let sp = space();
    let edge = || {
        Arc::new(
            EdgeIndex::open(&dir, Isolation::Filter)
                .unwrap()
                .optimize_after(100),
        )
    };
    let open = || -> DynIndex { edge() };
    let rows = |tenant: &'static str, from: usize, to: usize| -> Vec<Point> {
        (from..to)
            .map(|i| {
                point(
                    tenant,
                    if i % 2 == 0 {
                        Kind::Order
                    } else {
                        Kind::Customer
                    },
                    "shopify",
                    &format!("{tenant}{i}"),
                    &[1, 1000 + i as u32],
                    None,
                    i as i32,
                    None,
                )
            })
            .collect()
    };
    {
        let e = edge();
        let idx: DynIndex = e.clone();
        idx.ensure(&sp).await.unwrap();
        idx.upsert(&sp, rows("ta", 0, 50)).await.unwrap();
        let first = e.segments(&sp, "ta").unwrap();
        for from in (50..1000).step_by(50) {
            idx.upsert(&sp, rows("ta", from, from + 50)).await.unwrap();
        }
        // Sealed as they came, though a few hundred small points are far below Edge's own threshold.
        let grown = e.segments(&sp, "ta").unwrap();
        assert!(grown > first, "{first} segments, then {grown}");
        idx.upsert(&sp, rows("tb", 0, 300)).await.unwrap();
        // The first hundred again, after they were optimised away from the appendable segment.
        idx.upsert(&sp, rows("ta", 0, 100)).await.unwrap();
        check_grown(&idx, &sp).await;
        idx.flush(&sp).await.unwrap();
    }
    check_grown(&open(), &sp).await;
}

/// What `the_edge_index_optimises_as_it_grows_and_loses_nothing` wrote, as it must read back.
async fn check_grown(idx: &DynIndex, sp: &Space) {
    assert_eq!(idx.count(sp, "ta").await.unwrap(), 1000);
    assert_eq!(idx.count(sp, "tb").await.unwrap(), 300);
    assert_eq!(idx.count_term(sp, "ta", 1).await.unwrap(), 1000);
    assert_eq!(idx.count_term(sp, "ta", 1777).await.unwrap(), 1);
    assert_eq!(idx.count_term(sp, "tb", 1777).await.unwrap(), 0);
    assert_eq!(
        records(&idx.query(sp, &query("ta", &[1777], None)).await.unwrap()),
        ["ta777"]
    );
    let mut q = query("ta", &[1], None);
    q.filter.kinds = vec![Kind::Order];
    q.filter.days = Some((10, 15));
    let mut found = records(&idx.query(sp, &q).await.unwrap());
    found.sort();
    assert_eq!(found, ["ta10", "ta12", "ta14"]);
    // Rewritten points were replaced in their segment, not added again.
    let v = idx
        .versions(
            sp,
            "ta",
            &[smb_search::doc::point_id(
                "ta",
                Kind::Customer,
                "shopify",
                "ta5",
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        v.values().next().map(String::as_str),
        Some("v-ta5-[1, 1005]")
    );
}
