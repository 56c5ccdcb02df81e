//! Client for the Autobahn fuzzing server (`autobahn/run.sh client`).
//!
//! `cargo run --release --all-features --example autobahn_client -- ws://127.0.0.1:9001 AGENT [--runtime blocking|tokio]`
//!
//! Asks the server how many cases there are, runs each one as an echo
//! client (offering permessage-deflate, as the default config does), then
//! asks it to write the reports.
use chito::{Error, Handler, Message, OwnedEvent, Sender};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, sender: &mut Sender<'_>, message: Message<'_>) {
        let _ = sender.send(message);
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args
        .first()
        .cloned()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.get(1).cloned().unwrap_or_else(|| "chito".into());
    let runtime = args
        .iter()
        .position(|a| a == "--runtime")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "blocking".into());
    match runtime.as_str() {
        "blocking" => blocking(&base, &agent),
        #[cfg(feature = "tokio")]
        "tokio" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(tokio_client(&base, &agent)),
        other => {
            eprintln!("unknown runtime {other:?} (blocking, or tokio with --features tokio)");
            std::process::exit(2);
        }
    }
}

fn parse_count(event: OwnedEvent) -> Result<Option<u32>, Error> {
    let invalid =
        |what: String| Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
    match event {
        OwnedEvent::Text(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("case count {text:?} is not a number"))),
        OwnedEvent::Close(_) => Err(invalid("closed before sending the case count".into())),
        _ => Ok(None),
    }
}

fn blocking(base: &str, agent: &str) -> Result<(), Error> {
    use chito::blocking::connect;
    let (mut ws, _) = connect(&format!("{base}/getCaseCount"))?;
    let count = loop {
        if let Some(count) = parse_count(ws.recv()?)? {
            break count;
        }
    };
    eprintln!("autobahn_client (blocking): {count} cases, agent {agent}");
    for case in 1..=count {
        match connect(&format!("{base}/runCase?case={case}&agent={agent}")) {
            Ok((ws, _)) => ws.serve(&mut Echo),
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    let (mut ws, _) = connect(&format!("{base}/updateReports?agent={agent}"))?;
    // The server closes once the reports are written.
    while !matches!(ws.recv(), Ok(OwnedEvent::Close(_)) | Err(_)) {}
    eprintln!("reports updated");
    Ok(())
}

#[cfg(feature = "tokio")]
async fn tokio_client(base: &str, agent: &str) -> Result<(), Error> {
    use chito::tokio::connect;
    let (mut ws, _) = connect(&format!("{base}/getCaseCount")).await?;
    let count = loop {
        if let Some(count) = parse_count(ws.recv().await?)? {
            break count;
        }
    };
    eprintln!("autobahn_client (tokio): {count} cases, agent {agent}");
    for case in 1..=count {
        match connect(&format!("{base}/runCase?case={case}&agent={agent}")).await {
            Ok((ws, _)) => ws.serve(&mut Echo).await,
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    let (mut ws, _) = connect(&format!("{base}/updateReports?agent={agent}")).await?;
    while !matches!(ws.recv().await, Ok(OwnedEvent::Close(_)) | Err(_)) {}
    eprintln!("reports updated");
    Ok(())
}
