//! Handlers and their extractors (docs/socketio.md §8) over a real
//! server on 127.0.0.1: a raw Socket.IO client on chito's WebSocket client
//! sends packets by hand and reads the server's answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chito::tokio::WebSocket;
use chito::{Message, OwnedEvent};
use chito_socketio::socketio::{
    Ack, Args, Bin, ConnectError, Data, DisconnectReason, Event, Extension, Socket, SocketIo,
    State, TryData,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Msg {
    text: String,
    n: u32,
}

#[derive(Debug, Deserialize)]
struct Auth {
    name: String,
}

#[derive(Debug, Clone, PartialEq)]
struct User(String);

#[derive(Clone)]
struct Prefix(&'static str);

async fn start(io: &SocketIo) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(io.clone().serve(listener));
    addr
}

struct Client {
    ws: WebSocket<TcpStream>,
}

impl Client {
    /// A WebSocket-only Engine.IO session (the open packet read).
    async fn open(addr: SocketAddr) -> Client {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = chito::tokio::connect(&url).await.unwrap();
        let open = next_text(&mut ws).await;
        assert!(open.starts_with("0{"), "{open}");
        Client { ws }
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::Text(text)).await.unwrap();
    }

    async fn recv(&mut self) -> String {
        next_text(&mut self.ws).await
    }

    /// Nothing arrives for `wait`.
    async fn silent(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, next_text(&mut self.ws))
            .await
            .is_err()
    }

    /// CONNECT to `/` with `auth`; the answer.
    async fn connect(addr: SocketAddr, auth: &str) -> (Client, String) {
        let mut client = Client::open(addr).await;
        client.send(&format!("40{auth}")).await;
        let answer = client.recv().await;
        (client, answer)
    }
}

/// The next text message that is not an Engine.IO ping.
async fn next_text(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .expect("a message within 5 s")
            .unwrap();
        match event {
            OwnedEvent::Text(text) if text.as_str() == "2" => {
                ws.send(Message::Text("3")).await.unwrap();
            }
            OwnedEvent::Text(text) => return text.to_string(),
            OwnedEvent::Binary(_) => panic!("unexpected binary message"),
            _ => {}
        }
    }
}

/// Waits until `condition` holds (handlers on other tasks).
async fn eventually(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_reads_one_argument_or_the_array_in_any_order_and_mismatches_are_counted() {
    let io = SocketIo::builder().build();
    io.ns("/", |socket: Socket| {
        // The same extractors in two orders.
        socket.on("a", |socket: Socket, Data(msg): Data<Msg>, ack: Ack| {
            let _ = ack.send_args(&(socket.ns(), msg.text, msg.n));
        });
        socket.on("b", |ack: Ack, Data(msg): Data<Msg>, socket: Socket| {
            let _ = ack.send_args(&(socket.ns(), msg.text, msg.n));
        });
        // Two arguments: read from their array.
        socket.on("pair", |Data((n, s)): Data<(u32, String)>, ack: Ack| {
            let _ = ack.send(&format!("{s}{n}"));
        });
        socket.on("try", |TryData(msg): TryData<Msg>, ack: Ack| {
            let _ = ack.send(&msg.map(|m| m.n).map_err(|e| e.to_string()));
        });
    });
    let addr = start(&io).await;
    let (mut client, connected) = Client::connect(addr, "").await;
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");

    client.send(r#"421["a",{"text":"hi","n":1}]"#).await;
    assert_eq!(client.recv().await, r#"431["/","hi",1]"#);
    client.send(r#"422["b",{"text":"yo","n":2}]"#).await;
    assert_eq!(client.recv().await, r#"432["/","yo",2]"#);
    client.send(r#"423["pair",7,"x"]"#).await;
    assert_eq!(client.recv().await, r#"433["x7"]"#);

    // A payload that is not a Msg: dropped (no ack), counted.
    assert_eq!(io.handler_stats().refused_events, 0);
    client.send(r#"424["a","not a msg"]"#).await;
    client.send(r#"425["b",{"text":"no n"}]"#).await;
    assert!(client.silent(Duration::from_millis(200)).await);
    assert_eq!(io.handler_stats().refused_events, 2);

    // TryData hands the error to the handler instead.
    client.send(r#"426["try",{"text":"no n"}]"#).await;
    let answer = client.recv().await;
    assert!(
        answer.starts_with(r#"436[{"Err":"missing field `n`"#),
        "{answer}"
    );
    client.send(r#"427["try",{"text":"t","n":9}]"#).await;
    assert_eq!(client.recv().await, r#"437[{"Ok":9}]"#);
    assert_eq!(io.handler_stats().refused_events, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_event_bin_state_and_extension_extractors() {
    let io = SocketIo::builder().with_state(Prefix("p:")).build();
    io.ns("/", |socket: Socket, Data(auth): Data<Auth>| {
        socket.extensions().insert(User(auth.name));
        // Args beside Data: both read the arguments (Args gets a clone
        // here, the last owner gets them moved).
        socket.on(
            "both",
            |socket: Socket, args: Args, Data(msg): Data<Msg>, Event(name): Event| {
                let _ = socket.emit_args("both-back", &(name, args.len(), msg.n));
            },
        );
        socket.on("echo", |socket: Socket, args: Args| {
            let _ = socket.emit_args("echo-back", &args);
        });
        socket.on(
            "who",
            |Extension(user): Extension<User>, State(prefix): State<Prefix>, ack: Ack| {
                let _ = ack.send(&format!("{}{}", prefix.0, user.0));
            },
        );
        socket.on("no-state", |State(_): State<u64>, ack: Ack| {
            let _ = ack.send(&"unreachable");
        });
        // No u8 extension: `Extension` refuses, `Option<Extension>` is None.
        socket.on("no-ext", |Extension(_): Extension<u8>, ack: Ack| {
            let _ = ack.send(&"unreachable");
        });
        socket.on("maybe-ext", |ext: Option<Extension<u8>>, ack: Ack| {
            let _ = ack.send(&ext.is_none());
        });
        socket.on("bin", |Bin(attachments): Bin, ack: Ack| {
            let _ = ack.send(&attachments.len());
        });
        // Two Acks: the first takes the id, the second answers nothing.
        socket.on("two-acks", |first: Ack, second: Ack| {
            assert!(!second.is_requested());
            let _ = second.send(&2);
            let _ = first.send(&1);
        });
        // Two extractors wanting the Args: one gets a clone, one the Args.
        socket.on("twice", |a: Args, b: Args, ack: Ack| {
            let _ = ack.send_args(&(a.len(), b.len()));
        });
    });
    let addr = start(&io).await;
    let (mut client, connected) = Client::connect(addr, r#"{"name":"ann"}"#).await;
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");

    client.send(r#"42["both",{"text":"t","n":4}]"#).await;
    assert_eq!(client.recv().await, r#"42["both-back","both",1,4]"#);
    client.send(r#"42["echo",{"a":[1,2]},"s",null]"#).await;
    assert_eq!(
        client.recv().await,
        r#"42["echo-back",{"a":[1,2]},"s",null]"#
    );
    client.send(r#"421["who"]"#).await;
    assert_eq!(client.recv().await, r#"431["p:ann"]"#);
    client.send(r#"422["twice",1,2,3]"#).await;
    assert_eq!(client.recv().await, r#"432[3,3]"#);
    client.send(r#"425["two-acks"]"#).await;
    assert_eq!(client.recv().await, r#"435[1]"#);
    assert!(client.silent(Duration::from_millis(100)).await);
    client.send(r#"423["no-state"]"#).await;
    assert!(client.silent(Duration::from_millis(200)).await);
    assert_eq!(io.handler_stats().refused_events, 1);
    client.send(r#"426["no-ext"]"#).await;
    assert!(client.silent(Duration::from_millis(200)).await);
    assert_eq!(io.handler_stats().refused_events, 2);
    client.send(r#"427["maybe-ext"]"#).await;
    assert_eq!(client.recv().await, r#"437[true]"#);

    // One binary attachment (socket.io-protocol: 5<n>-…, then the frame).
    client
        .send(r#"451-4["bin",{"_placeholder":true,"num":0}]"#)
        .await;
    client.ws.send(Message::Binary(&[1, 2, 3])).await.unwrap();
    assert_eq!(client.recv().await, r#"434[1]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handlers_are_spawned_and_their_errors_counted() {
    let io = SocketIo::builder().build();
    io.ns("/", |socket: Socket| async move {
        socket.on("slow", |Data(ms): Data<u64>, ack: Ack| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ack.send(&ms)
        });
        socket.on("fail", |socket: Socket| async move {
            socket.emit("before-fail", &1)?;
            Err::<(), Box<dyn std::error::Error + Send + Sync>>("handler failed".into())
        });
        let _ = socket.emit("ready", &true);
    });
    let addr = start(&io).await;
    let (mut client, connected) = Client::connect(addr, "").await;
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    assert_eq!(client.recv().await, r#"42["ready",true]"#);

    // The slow one answers after the quick one: each is a task of its own.
    client.send(r#"421["slow",300]"#).await;
    client.send(r#"422["slow",10]"#).await;
    assert_eq!(client.recv().await, r#"432[10]"#);
    assert_eq!(client.recv().await, r#"431[300]"#);

    client.send(r#"42["fail"]"#).await;
    assert_eq!(client.recv().await, r#"42["before-fail",1]"#);
    let stats = io.clone();
    eventually(move || stats.handler_stats().failed_handlers == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_auth_and_middlewares_sync_async_and_by_reference() {
    let io = SocketIo::builder().build();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2, o3) = (order.clone(), order.clone(), order.clone());
    io.ns("/", |socket: Socket, Data(auth): Data<Auth>| {
        let _ = socket.emit("hello", &auth.name);
    })
    .with(move |socket: &Socket| {
        o1.lock().unwrap().push("by-ref");
        let _ = socket;
        Ok(())
    })
    .with(move |Data(auth): Data<Auth>| {
        let order = o2.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            order.lock().unwrap().push("async");
            if auth.name == "mallory" {
                Err(ConnectError::new("not you").with_data(&"banned"))
            } else {
                Ok(())
            }
        }
    })
    .with(move |socket: Socket| {
        o3.lock().unwrap().push("sync");
        socket.extensions().insert(User("checked".into()));
        Ok(())
    });
    let addr = start(&io).await;

    let (mut client, connected) = Client::connect(addr, r#"{"name":"bob"}"#).await;
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    assert_eq!(client.recv().await, r#"42["hello","bob"]"#);
    assert_eq!(*order.lock().unwrap(), ["by-ref", "async", "sync"]);

    // The async middleware refuses: the later one never runs.
    order.lock().unwrap().clear();
    let (_client, refused) = Client::connect(addr, r#"{"name":"mallory"}"#).await;
    assert_eq!(refused, r#"44{"message":"not you","data":"banned"}"#);
    assert_eq!(*order.lock().unwrap(), ["by-ref", "async"]);

    // Auth that is not an Auth: the middleware's Data refuses first.
    let (_client, refused) = Client::connect(addr, r#"{"nom":"x"}"#).await;
    assert_eq!(refused, r#"44{"message":"invalid auth payload"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_data_gives_a_connect_handler_the_auth_error() {
    let io = SocketIo::builder().build();
    io.ns("/", |socket: Socket, TryData(auth): TryData<Auth>| {
        let _ = socket.emit("auth-ok", &auth.is_ok());
    });
    let addr = start(&io).await;
    let (mut client, connected) = Client::connect(addr, r#"{"other":1}"#).await;
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    assert_eq!(client.recv().await, r#"42["auth-ok",false]"#);
    let (mut client, _) = Client::connect(addr, r#"{"name":"n"}"#).await;
    assert_eq!(client.recv().await, r#"42["auth-ok",true]"#);
    assert_eq!(io.handler_stats().refused_connects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_handler_whose_extractor_refuses_refuses_the_connection() {
    let io = SocketIo::builder().build();
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = ran.clone();
    io.ns("/", move |_socket: Socket, Data(_auth): Data<Auth>| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let addr = start(&io).await;
    let (_client, refused) = Client::connect(addr, r#"{"name":5}"#).await;
    assert_eq!(refused, r#"44{"message":"invalid auth payload"}"#);
    assert_eq!(io.handler_stats().refused_connects, 1);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let (_client, accepted) = Client::connect(addr, r#"{"name":"a"}"#).await;
    assert!(accepted.starts_with("40{\"sid\":"), "{accepted}");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_handlers_get_the_reason_and_extensions_and_data_survives() {
    let io = SocketIo::builder().build();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    io.ns("/", move |socket: Socket| {
        socket.extensions().insert(User("zed".into()));
        socket
            .set_data(&Msg {
                text: "presence".into(),
                n: 3,
            })
            .unwrap();
        let record = record.clone();
        socket.on_disconnect(
            move |reason: DisconnectReason, Extension(user): Extension<User>, socket: Socket| {
                let data: Option<Msg> = socket.data().unwrap();
                record
                    .lock()
                    .unwrap()
                    .push((reason, user.0, data.map(|d| d.n)));
            },
        );
    });
    let addr = start(&io).await;
    let (mut client, connected) = Client::connect(addr, "").await;
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    client.send("41").await;
    let check = seen.clone();
    eventually(move || !check.lock().unwrap().is_empty()).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [(
            DisconnectReason::ClientNamespaceDisconnect,
            "zed".to_owned(),
            Some(3)
        )]
    );
}

#[test]
fn extensions_insert_get_remove_by_type() {
    let extensions = chito_socketio::socketio::Extensions::default();
    assert_eq!(extensions.insert(User("a".into())), None);
    assert_eq!(extensions.insert(7u32), None);
    assert_eq!(extensions.insert(User("b".into())), Some(User("a".into())));
    assert_eq!(extensions.get::<User>(), Some(User("b".into())));
    assert_eq!(extensions.get::<u32>(), Some(7));
    assert!(extensions.contains::<u32>());
    assert_eq!(extensions.remove::<u32>(), Some(7));
    assert_eq!(extensions.get::<u32>(), None);
    assert!(!extensions.contains::<u64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_namespaces_take_extractor_handlers_and_the_earlier_forms_compile() {
    let io = SocketIo::builder().build();
    io.dyn_ns(
        |name: &str| name.starts_with("/team-"),
        |socket: Socket, Data(auth): Data<Auth>| {
            let _ = socket.emit("team", &(socket.ns(), auth.name.as_str()));
            // The form handlers had before extractors.
            socket.on("old", |socket: Socket, args: Args, ack: Ack| {
                let _ = socket.emit_args("old-back", &args);
                let _ = ack.send(&args.len());
            });
            socket.on_disconnect(|_socket: Socket, _reason: DisconnectReason| {});
        },
    )
    .with(|socket: &Socket| {
        if socket.ns().len() < 20 {
            Ok(())
        } else {
            Err(ConnectError::new("name too long"))
        }
    });
    let addr = start(&io).await;
    let mut client = Client::open(addr).await;
    client.send(r#"40/team-a,{"name":"cy"}"#).await;
    let connected = client.recv().await;
    assert!(connected.starts_with("40/team-a,{\"sid\":"), "{connected}");
    assert_eq!(
        client.recv().await,
        r#"42/team-a,["team",["/team-a","cy"]]"#
    );
    client.send(r#"42/team-a,1["old","x"]"#).await;
    assert_eq!(client.recv().await, r#"42/team-a,["old-back","x"]"#);
    assert_eq!(client.recv().await, r#"43/team-a,1[1]"#);
    client
        .send(r#"40/team-with-a-long-name,{"name":"cy"}"#)
        .await;
    assert_eq!(
        client.recv().await,
        r#"44/team-with-a-long-name,{"message":"name too long"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connect_during_an_async_middleware_gets_the_same_socket() {
    let io = SocketIo::builder().build();
    let connects = Arc::new(AtomicUsize::new(0));
    let counted = connects.clone();
    io.ns("/", move |_socket: Socket| {
        counted.fetch_add(1, Ordering::SeqCst);
    })
    .with(|| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    });
    let addr = start(&io).await;
    let mut client = Client::open(addr).await;
    client.send("40").await;
    client.send("40").await;
    let first = client.recv().await;
    let second = client.recv().await;
    assert!(first.starts_with("40{\"sid\":"), "{first}");
    assert_eq!(first, second);
    assert_eq!(connects.load(Ordering::SeqCst), 1);
}
