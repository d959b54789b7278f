//! The images-bucket adapter (`S3Objects`) against moto's S3 server: presigned upload and download URLs used
//! over HTTP as the app would, head/get/put/delete, and a prefix sweep of more than one listing page (what
//! account deletion relies on).

use std::sync::Arc;

use facemake::adapters::objects::S3Objects;
use facemake::ports::{ObjectInfo, ObjectStore};

use testkit::moto_bucket as bucket;

#[tokio::test]
async fn the_app_uploads_through_the_presigned_url_and_downloads_the_output() {
    let (client, name) = bucket().await;
    let store = S3Objects::new(client, name);
    let photo = b"\xff\xd8\xff\xe0 a jpeg, as far as S3 cares".to_vec();
    let signed = store.presign_upload("uploads/u1/a", "image/jpeg", photo.len() as u64, 900, 0).await.unwrap();
    let mut put = reqwest::Client::new().put(&signed.url).body(photo.clone());
    for (name, value) in &signed.headers {
        put = put.header(name, value);
    }
    let response = put.send().await.unwrap();
    assert!(response.status().is_success(), "{}: {}", response.status(), response.text().await.unwrap());

    let info = store.head("uploads/u1/a").await.unwrap();
    assert_eq!(info, Some(ObjectInfo { content_type: Some("image/jpeg".into()), length: photo.len() as u64 }));
    assert_eq!(store.get("uploads/u1/a", 1 << 20).await.unwrap(), Some(photo.clone()));
    assert!(store.get("uploads/u1/a", 4).await.is_err(), "over the cap: refused, never read into memory");

    store.put("outputs/u1/g.png", vec![1, 2, 3], "image/png").await.unwrap();
    let url = store.presign_download("outputs/u1/g.png", 600, 0).await.unwrap();
    let downloaded = reqwest::get(&url).await.unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), vec![1, 2, 3]);
}

#[tokio::test]
async fn missing_objects_are_none_and_deletes_are_idempotent() {
    let (client, name) = bucket().await;
    let store = S3Objects::new(client, name);
    assert_eq!(store.head("uploads/u1/none").await.unwrap(), None);
    assert_eq!(store.get("uploads/u1/none", 10).await.unwrap(), None);
    store.put("work/u1/g.jpg", vec![9], "image/jpeg").await.unwrap();
    let keys = vec!["work/u1/g.jpg".to_owned(), "work/u1/never-existed.jpg".to_owned()];
    store.delete(&keys).await.unwrap();
    store.delete(&keys).await.unwrap();
    assert_eq!(store.head("work/u1/g.jpg").await.unwrap(), None);
}

#[tokio::test]
async fn a_prefix_sweep_takes_every_page_and_nothing_else() {
    let (client, name) = bucket().await;
    let store = Arc::new(S3Objects::new(client, name));
    // More than one ListObjectsV2 page (1000 keys).
    let puts: Vec<_> = (0..1010)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.put(&format!("outputs/u1/{i:04}.png"), vec![0], "image/png").await })
        })
        .collect();
    for p in puts {
        p.await.unwrap().unwrap();
    }
    store.put("outputs/u10/keep.png", vec![0], "image/png").await.unwrap();
    store.put("outputs/u2/keep.png", vec![0], "image/png").await.unwrap();
    assert_eq!(store.delete_prefix("outputs/u1/").await.unwrap(), 1010);
    assert_eq!(store.delete_prefix("outputs/u1/").await.unwrap(), 0);
    assert!(store.head("outputs/u10/keep.png").await.unwrap().is_some(), "a prefix is not a substring");
    assert!(store.head("outputs/u2/keep.png").await.unwrap().is_some());
}
