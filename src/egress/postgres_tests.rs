//! Tests of `egress::postgres`.

use super::*;

#[test]
fn error_responses_are_well_formed_postgres_messages() {
    let msg = error_response(SQLSTATE_POLICY_DENIED, "address 127.0.0.2 is denied");
    assert_eq!(msg[0], b'E');
    let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
    assert_eq!(len + 1, msg.len());
    let text = String::from_utf8_lossy(&msg[5..]);
    assert!(text.contains("CTM001\0"), "{text:?}");
    assert!(
        text.contains("Mtenant-mcp: address 127.0.0.2 is denied\0"),
        "{text:?}"
    );
    assert!(msg.ends_with(&[0, 0]));
    assert_eq!(reason_of_sqlstate("TM001"), Some("PolicyDenied"));
    assert_eq!(reason_of_sqlstate("28P01"), None);
}

#[test]
fn login_failures_are_named_by_their_sqlstate() {
    let body = |code: &str| format!("SFATAL\0C{code}\0Mno\0\0").into_bytes();
    assert_eq!(login_failure(&body("28P01")), "AuthFailed");
    assert_eq!(login_failure(&body("3D000")), "DatabaseNotFound");
    assert_eq!(login_failure(&body("53300")), "ServerError");
}

/// A hostile server (an endpoint is whatever a tenant configured) announcing a 4 GiB
/// message before login must not make the app pod allocate it.
#[tokio::test]
async fn a_huge_login_message_length_is_refused_not_allocated() {
    let (client, _app) = UnixStream::pair().unwrap();
    let (server, mut hostile) = tokio::io::duplex(64);
    hostile
        .write_all(&[b'R', 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let seen = std::sync::Mutex::new(None);
    relay(
        client,
        Box::new(server),
        false,
        std::time::Instant::now(),
        |o| {
            *seen.lock().unwrap() = Some(o);
        },
    )
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        Some(ConnectOutcome::Failed("ServerError"))
    );
}

/// Issue 27, item 3 (threat model: a bad DNS answer or a changed host sends a tenant's
/// Postgres connection to a server that is not its own): a server that asks for the
/// password in cleartext or as MD5 over a connection whose certificate was not verified
/// gets no answer and the client an error; over a verified one, and for SCRAM, the request
/// is passed on.
#[tokio::test]
async fn a_readable_password_is_asked_for_only_over_verified_tls() {
    let cleartext = [b'R', 0, 0, 0, 8, 0, 0, 0, 3];
    let md5 = [b'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4];
    let scram = *b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0";
    for (request, verified, passed) in [
        (&cleartext[..], false, false),
        (&md5[..], false, false),
        (&cleartext[..], true, true),
        (&md5[..], true, true),
        (&scram[..], false, true),
    ] {
        let (client, mut app) = UnixStream::pair().unwrap();
        let (server, mut db) = tokio::io::duplex(1024);
        let seen = Arc::new(std::sync::Mutex::new(None));
        let report = {
            let seen = seen.clone();
            move |o| *seen.lock().unwrap() = Some(o)
        };
        let relayed = tokio::spawn(relay(
            client,
            Box::new(server),
            verified,
            std::time::Instant::now(),
            report,
        ));
        db.write_all(request).await.unwrap();
        let mut got = vec![0u8; request.len()];
        app.read_exact(&mut got[..1]).await.unwrap();
        if passed {
            app.read_exact(&mut got[1..]).await.unwrap();
            assert_eq!(got, request, "verified {verified}");
            // The client answers; the server receives it.
            app.write_all(b"p-answer").await.unwrap();
            let mut answer = [0u8; 8];
            db.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, b"p-answer");
            drop(app);
            drop(db);
            relayed.await.unwrap();
        } else {
            assert_eq!(got[0], b'E', "{request:?} was passed on");
            let mut rest = Vec::new();
            app.read_to_end(&mut rest).await.unwrap();
            let text = String::from_utf8_lossy(&rest);
            assert!(text.contains("CTM004\0"), "{text:?}");
            relayed.await.unwrap();
            assert_eq!(
                *seen.lock().unwrap(),
                Some(ConnectOutcome::Failed("InsecureAuth"))
            );
            // Nothing of the client reached the server.
            let mut leaked = Vec::new();
            db.read_to_end(&mut leaked).await.unwrap();
            assert!(leaked.is_empty(), "{leaked:?}");
        }
    }
}

#[tokio::test]
async fn set_up_is_timed_until_ready_for_query_and_then_bytes_flow() {
    let (client, mut app) = UnixStream::pair().unwrap();
    let (server, mut db) = tokio::io::duplex(1024);
    let seen = Arc::new(std::sync::Mutex::new(None));
    let report = {
        let seen = seen.clone();
        move |o| *seen.lock().unwrap() = Some(o)
    };
    let relayed = tokio::spawn(relay(
        client,
        Box::new(server),
        false,
        std::time::Instant::now(),
        report,
    ));
    // AuthenticationOk, ReadyForQuery(idle), then a query answer after set-up.
    db.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]).await.unwrap();
    db.write_all(&[b'Z', 0, 0, 0, 5, b'I']).await.unwrap();
    db.write_all(b"after").await.unwrap();
    let mut got = [0u8; 20];
    app.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[15..], b"after");
    assert!(matches!(
        *seen.lock().unwrap(),
        Some(ConnectOutcome::Ready(_))
    ));
    app.write_all(b"query").await.unwrap();
    let mut sent = [0u8; 5];
    db.read_exact(&mut sent).await.unwrap();
    assert_eq!(&sent, b"query");
    drop(app);
    drop(db);
    relayed.await.unwrap();
}
