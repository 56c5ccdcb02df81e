//! Client for the Autobahn fuzzing server (`autobahn/run.sh client`).
//!
//! `cargo run --release --example autobahn_client -- ws://127.0.0.1:9001 AGENT [--runtime blocking]`
//!
//! Asks the server how many cases there are, runs each one as an echo
//! client, then asks it to write the reports.
use chito::{blocking, Error, Handler, Message, OwnedEvent, Sender};

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
    if runtime != "blocking" {
        eprintln!("unknown runtime {runtime:?} (available: blocking)");
        std::process::exit(2);
    }

    let count = case_count(&base)?;
    eprintln!("autobahn_client ({runtime}): {count} cases, agent {agent}");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        match blocking::connect(&url) {
            Ok((ws, _)) => ws.serve(&mut Echo),
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    let (mut ws, _) = blocking::connect(&format!("{base}/updateReports?agent={agent}"))?;
    // The server closes once the reports are written.
    while !matches!(ws.read(), Ok(OwnedEvent::Close(_)) | Err(_)) {}
    eprintln!("reports updated");
    Ok(())
}

fn case_count(base: &str) -> Result<u32, Error> {
    let (mut ws, _) = blocking::connect(&format!("{base}/getCaseCount"))?;
    loop {
        match ws.read()? {
            OwnedEvent::Text(text) => {
                return text.trim().parse().map_err(|_| {
                    Error::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("case count {text:?} is not a number"),
                    ))
                })
            }
            OwnedEvent::Close(_) => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "closed before sending the case count",
                )))
            }
            _ => {}
        }
    }
}
