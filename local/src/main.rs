//! `local-triggers`: runs `template.yaml`'s schedules and DynamoDB stream event
//! sources against DynamoDB Local (`AWS_ENDPOINT_URL_DYNAMODB`) and the functions
//! `cargo lambda watch` serves. `scripts/run` starts it; it runs until stopped.
//!
//! ```text
//! local-triggers --lambda http://127.0.0.1:9000 [--table LogicalId=name]...
//!                [--parameter Name=value]... [--schedule-every SECONDS] [--template PATH]
//! ```

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use local_triggers::Error;
use local_triggers::lambda::Emulator;
use local_triggers::mapping::{self, Invocation};
use local_triggers::streams::{self, DynamoDbLocal, Position, Stream};
use local_triggers::template::{Schedule, StreamSource, Triggers};

/// How often each shard is polled (Lambda polls stream shards four times a second).
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often the shard list is refreshed to find new shards.
const SHARD_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Options {
    lambda: String,
    dynamodb: String,
    template: String,
    tables: HashMap<String, String>,
    parameters: Vec<(String, String)>,
    schedule_every: Option<Duration>,
}

fn options() -> Result<Options, String> {
    let usage = "usage: local-triggers --lambda URL [--table LogicalId=name]... [--parameter Name=value]... \
                 [--schedule-every SECONDS] [--template PATH]";
    let dynamodb = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .map_err(|_| "AWS_ENDPOINT_URL_DYNAMODB must name DynamoDB Local".to_owned())?;
    let mut options = Options {
        lambda: String::new(),
        dynamodb,
        template: "template.yaml".into(),
        tables: HashMap::new(),
        parameters: Vec::new(),
        schedule_every: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{usage}"))?;
        let pair = || {
            value
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("{flag} {value}: expected NAME=VALUE"))
        };
        match flag.as_str() {
            "--lambda" => options.lambda = value.clone(),
            "--template" => options.template = value.clone(),
            "--table" => {
                let (id, name) = pair()?;
                options.tables.insert(id, name);
            }
            "--parameter" => options.parameters.push(pair()?),
            "--schedule-every" => {
                let seconds: u64 = value
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("--schedule-every {value}: expected a whole number of seconds"))?;
                options.schedule_every = Some(Duration::from_secs(seconds));
            }
            _ => return Err(usage.into()),
        }
    }
    if options.lambda.is_empty() {
        return Err(usage.into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("local-triggers: {message}");
            return ExitCode::from(2);
        }
    };
    let triggers = std::fs::read_to_string(&options.template)
        .map_err(|e| format!("{}: {e}", options.template))
        .and_then(|text| Triggers::from_template(&text, &options.parameters).map_err(|e| e.to_string()));
    let triggers = match triggers {
        Ok(triggers) => triggers,
        Err(message) => {
            eprintln!("local-triggers: {message}");
            return ExitCode::FAILURE;
        }
    };
    let emulator = Emulator::new(&options.lambda);
    let mut workers = Vec::new();
    for mut schedule in triggers.schedules {
        if let Some(every) = options.schedule_every {
            schedule.every = every;
        }
        let emulator = emulator.clone();
        workers.push(thread::spawn(move || run_schedule(&schedule, &emulator)));
    }
    for source in triggers.streams {
        let Some(table) = options.tables.get(&source.table).cloned() else {
            eprintln!(
                "local-triggers: no table name for {} (pass --table {}=NAME)",
                source.table, source.table
            );
            return ExitCode::FAILURE;
        };
        let (emulator, db) = (emulator.clone(), DynamoDbLocal::new(&options.dynamodb));
        workers.push(thread::spawn(move || run_stream(&source, &table, &db, &emulator)));
    }
    for worker in workers {
        let _ = worker.join();
    }
    ExitCode::SUCCESS
}

/// Invokes the function every `schedule.every`, as EventBridge Scheduler would.
fn run_schedule(schedule: &Schedule, emulator: &Emulator) {
    eprintln!(
        "local-triggers: {} every {} s with {}",
        schedule.function,
        schedule.every.as_secs(),
        schedule.input
    );
    let mut next = Instant::now() + schedule.every;
    loop {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        next += schedule.every;
        // Success is the function's to log; a failure is the scheduler's to report.
        if let Invocation::Failed(error) = emulator.invoke(&schedule.function, &schedule.input) {
            eprintln!("local-triggers: {} failed: {error}", schedule.function);
        }
        // A run longer than the interval is not made up for (Scheduler would have started another).
        next = next.max(Instant::now());
    }
}

/// One shard being read: where to read next and the last record handed on.
struct ShardReader {
    iterator: String,
    last: Option<String>,
}

/// Reads `table`'s stream for ever, delivering records as the event source mapping would.
fn run_stream(source: &StreamSource, table: &str, db: &DynamoDbLocal, emulator: &Emulator) {
    let stream = loop {
        match db.stream(table) {
            Ok(stream) => break stream,
            Err(e) => {
                eprintln!("local-triggers: waiting for the stream of table {table}: {e}");
                thread::sleep(Duration::from_secs(2));
            }
        }
    };
    eprintln!(
        "local-triggers: {} reads the stream of table {table} in batches of up to {}",
        source.function, source.batch_size
    );
    let mut readers: HashMap<String, ShardReader> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut refreshed: Option<Instant> = None;
    loop {
        if refreshed.is_none_or(|at| at.elapsed() > SHARD_REFRESH) {
            match open_new_shards(source, db, &stream.arn, &mut readers, &finished) {
                Ok(()) => refreshed = Some(Instant::now()),
                Err(e) => eprintln!("local-triggers: listing the shards of table {table}: {e}"),
            }
        }
        let shards: Vec<String> = readers.keys().cloned().collect();
        for shard in shards {
            if let Err(e) = poll_shard(source, db, emulator, &stream, &shard, &mut readers, &mut finished) {
                eprintln!("local-triggers: reading {shard}: {e}");
                // Re-open where we stopped; DynamoDB Local may have restarted.
                if let Some(reader) = readers.get_mut(&shard) {
                    let position = reader.last.clone().map_or(Position::Oldest, Position::After);
                    match db.shard_iterator(&stream.arn, &shard, &position) {
                        Ok(iterator) => reader.iterator = iterator,
                        Err(_) => thread::sleep(Duration::from_secs(1)),
                    }
                }
            }
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn open_new_shards(
    source: &StreamSource,
    db: &DynamoDbLocal,
    arn: &str,
    readers: &mut HashMap<String, ShardReader>,
    finished: &HashSet<String>,
) -> Result<(), Error> {
    let shards = db.shards(arn)?;
    let known: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
    for shard in &shards {
        if readers.contains_key(&shard.id) || finished.contains(&shard.id) {
            continue;
        }
        // A child waits until its parent has been read to its end.
        let parent_pending = shard
            .parent
            .as_deref()
            .is_some_and(|p| known.contains(p) && !finished.contains(p));
        if parent_pending {
            continue;
        }
        let position = if source.from_trim_horizon || shard.parent.is_some() {
            Position::Oldest
        } else {
            Position::Newest
        };
        let iterator = db.shard_iterator(arn, &shard.id, &position)?;
        readers.insert(shard.id.clone(), ShardReader { iterator, last: None });
    }
    Ok(())
}

fn poll_shard(
    source: &StreamSource,
    db: &DynamoDbLocal,
    emulator: &Emulator,
    stream: &Stream,
    shard: &str,
    readers: &mut HashMap<String, ShardReader>,
    finished: &mut HashSet<String>,
) -> Result<(), Error> {
    loop {
        let Some(reader) = readers.get_mut(shard) else {
            return Ok(());
        };
        let page = db.get_records(&reader.iterator)?;
        let read_at = page.read_at;
        let got = page.records.len();
        if let Some(last) = page.records.last() {
            reader.last = last["dynamodb"]["SequenceNumber"].as_str().map(str::to_owned);
            let records = page
                .records
                .into_iter()
                .map(|r| streams::lambda_record(r, stream, read_at))
                .collect();
            let delivery = mapping::deliver(
                source,
                shard,
                records,
                streams::now,
                |payload| emulator.invoke(&source.function, &payload.to_string()),
                thread::sleep,
            );
            if delivery.invocations > 0 {
                eprintln!(
                    "local-triggers: {}: {} record(s) delivered in {} invocation(s), {} filtered out",
                    source.function, delivery.delivered, delivery.invocations, delivery.filtered
                );
            }
            for record in &delivery.abandoned {
                eprintln!(
                    "local-triggers: {}: to the on-failure destination: {record}",
                    source.function
                );
            }
        }
        match page.next {
            Some(next) => reader.iterator = next,
            None => {
                readers.remove(shard);
                finished.insert(shard.to_owned());
                return Ok(());
            }
        }
        if got == 0 {
            return Ok(());
        }
    }
}
