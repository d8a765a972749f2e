//! A tour of what multiproc does today, in one program.
//!
//! ```text
//! cargo run --release --example tour
//! ```
//!
//! It starts processes named as Python names them, shows why each one ended, calls an
//! actor hosted in a child (also from a sibling process, routed along the tree), sends
//! a message through a pipe, shows that a crash in a child costs the parent nothing,
//! runs a supervised tree that restarts a crashing worker, a pool that survives a task
//! that kills its worker, a lock that survives its holder's death, a value in shared
//! memory, and a manager whose death is an error rather than a hang.

use std::error::Error;
use std::time::Duration;

use multiproc::blocking::{ActorRef, Connection, Process, pipe};
use multiproc::{Actor, BoxError};
use serde::{Deserialize, Serialize};

fn greet(name: String) {
    let me = multiproc::current_process();
    println!("  hello {name}, from {} (pid {})", me.name(), me.pid());
}

fn crash(how: String) {
    match how.as_str() {
        "panic" => panic!("a bug in a child"),
        "abort" => std::process::abort(),
        _ => std::process::exit(3),
    }
}

// ANCHOR: actor
/// A bank account living in its own process.
struct Account {
    balance: i64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
}

impl Actor for Account {
    type Args = i64;
    type Msg = Op;
    type Reply = Result<i64, String>;

    async fn start(opening: i64) -> Result<Self, BoxError> {
        Ok(Account { balance: opening })
    }

    async fn handle(&mut self, op: Op) -> Result<i64, String> {
        match op {
            Op::Deposit(n) => self.balance += n,
            Op::Withdraw(n) if n > self.balance => {
                return Err(format!("insufficient funds for {n}"));
            }
            Op::Withdraw(n) => self.balance -= n,
        }
        Ok(self.balance)
    }
}
multiproc::register_actor!(Account);
// ANCHOR_END: actor

/// Runs in a sibling of the account's process: the call goes up to the root and down.
fn customer(
    (account, mut done): (multiproc::ActorRef<Account>, Connection),
) -> Result<(), Box<dyn Error>> {
    let balance = ActorRef::from(account).call(Op::Deposit(25))?;
    done.send(&balance)?;
    Ok(())
}

fn sender(mut conn: Connection) -> Result<(), multiproc::connection::Error> {
    conn.send(&(42, None::<()>, "hello".to_string()))
}

fn steady() {
    multiproc::blocking::wait_for_stop();
}

fn flaky() {
    std::thread::sleep(Duration::from_millis(30));
    panic!("flaky worker crashed");
}
multiproc::register!(
    add_to,
    hold_lock,
    square,
    abort_worker,
    greet,
    crash,
    customer,
    sender,
    steady,
    flaky
);

#[multiproc::main]
fn main() -> Result<(), Box<dyn Error>> {
    println!(
        "{} (pid {}) on {} CPUs",
        multiproc::current_process().name(),
        std::process::id(),
        multiproc::cpu_count()
    );

    println!("\n1. Processes, named as Python names them");
    for who in ["alice", "bob"] {
        let mut p = Process::new(greet, who.to_string());
        p.start()?;
        p.join()?;
    }

    println!("\n2. Crashes are contained, and exit reasons are data");
    for how in ["panic", "abort", "exit"] {
        let mut p = Process::new(crash, how.to_string()).capture_output();
        p.start()?;
        let reason = p.join()?;
        println!(
            "  {} exitcode={} reason={reason}",
            p.name(),
            reason.exit_code()
        );
    }

    println!("\n3. An actor in its own process");
    // ANCHOR: calls
    let mut bank = Process::actor::<Account>(100);
    bank.start()?;
    let account = bank.actor_ref::<Account>();
    println!("  deposit 50 -> {:?}", account.call(Op::Deposit(50))?);
    println!("  withdraw 500 -> {:?}", account.call(Op::Withdraw(500))?);
    // ANCHOR_END: calls

    println!("\n4. Handles are values: a sibling process calls the same actor");
    let (mut ours, theirs) = pipe(true)?;
    let mut c = Process::new(customer, (account.as_async().clone(), theirs));
    c.start()?;
    let seen: Result<i64, String> = ours.recv()?;
    c.join()?;
    println!("  {} deposited 25 -> {seen:?}", c.name());

    println!("\n5. Pipes");
    let (mut ours, theirs) = pipe(true)?;
    let mut s = Process::new(sender, theirs);
    s.start()?;
    let got: (i32, Option<()>, String) = ours.recv()?;
    s.join()?;
    println!("  received {got:?}");

    println!("\n6. Stopping: ask, wait, then kill");
    let reason = bank.stop(Duration::from_secs(5))?;
    println!("  {} stopped: {reason}", bank.name());
    match account.call(Op::Deposit(1)) {
        Err(err) => println!("  calling it now: {err}"),
        Ok(balance) => println!("  unexpectedly still running: {balance:?}"),
    }

    println!("\n7. A supervised tree survives its crashes");
    let supervisor = multiproc::Supervisor::new(multiproc::SupervisorFlags::default())
        .child(multiproc::function_child("steady", steady, ())?)
        .child(multiproc::function_child("flaky", flaky, ())?);
    let sup = multiproc::blocking::SupervisorRef::start(supervisor)?;
    for event in sup
        .events_from_start()
        .filter(|e| matches!(e, multiproc::SupervisorEvent::Restarted { .. }))
        .take(2)
    {
        println!("  {event:?}");
    }
    for child in sup.which_children()? {
        println!(
            "  {} ({}) is {:?}",
            child.id,
            child.name.unwrap_or_default(),
            child.state
        );
    }
    println!("  supervisor ended: {:?}", sup.shutdown());

    println!("\n8. A pool: Python's map, and a task that kills its worker");
    let pool = multiproc::blocking::Pool::new(2)?;
    println!("  map(square, 0..8) = {:?}", pool.map(square, 0..8)?);
    match pool.apply(abort_worker, ()) {
        Err(err) => println!("  a task that aborts its worker: {err}"),
        Ok(()) => println!("  unexpectedly survived"),
    }
    println!(
        "  and the pool goes on: square(12) = {}",
        pool.apply(square, 12)?
    );

    println!("\n9. A lock whose holder dies is not lost");
    let lock = multiproc::blocking::Lock::new()?;
    let (mut ours, theirs) = pipe(true)?;
    let mut holder = Process::new(hold_lock, (lock.clone(), theirs));
    holder.start()?;
    let _: String = ours.recv()?;
    println!("  {} holds the lock; killing it", holder.name());
    holder.kill()?;
    holder.join()?;
    match lock.acquire(true, Some(Duration::from_secs(5))) {
        Err(multiproc::SyncError::OwnerDied) => {
            println!("  acquired, and told: {}", multiproc::SyncError::OwnerDied)
        }
        other => println!("  unexpectedly: {other:?}"),
    }

    println!("\n10. Shared memory, and a manager whose server dies");
    let counter = multiproc::Value::new(0u64)?;
    let mut adders: Vec<Process> = (0..2)
        .map(|_| Process::new(add_to, counter.clone()))
        .collect();
    for p in &mut adders {
        p.start()?;
    }
    for p in &adders {
        p.join()?;
    }
    println!(
        "  two processes added 1000 each under its lock: {}",
        counter.get()?
    );
    let manager = multiproc::Manager::start()?;
    let inbox = manager.queue::<String>(0)?;
    inbox.qsize()?; // this thread's link to the server is made
    let server = manager
        .process()
        .map(|p| p.name().to_string())
        .unwrap_or_default();
    manager.process().map(|p| p.kill()).transpose()?;
    match inbox.get(true, None) {
        Err(e) => println!("  {server} killed; a waiting get is told: {e}"),
        Ok(item) => println!("  unexpectedly got {item}"),
    }
    Ok(())
}

/// Adds 1 to the value, 1000 times, each under its lock.
fn add_to(v: multiproc::Value<u64>) -> Result<(), multiproc::SharedMemoryError> {
    for _ in 0..1000 {
        *v.lock()? += 1;
    }
    Ok(())
}

/// Takes the lock, says so, and keeps it until killed.
fn hold_lock(lock: multiproc::blocking::Lock, mut up: Connection) -> Result<(), Box<dyn Error>> {
    lock.acquire(true, None)?;
    up.send(&"holding")?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn square(x: u64) -> u64 {
    x * x
}

fn abort_worker() {
    std::process::abort()
}
