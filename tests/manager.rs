//! Managers across real processes: every built-in type through proxies in a child,
//! nested proxies, registered types and what is not registered, a manager that
//! dies (typed errors, never a hang), a lock whose holder dies, a manager restarted
//! by its supervisor, a wrong authkey, and objects freed when their last proxy in
//! the tree is dropped or its process dies.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::{TestResult, trial};
use multiproc::blocking::{Connection, Events, Process, Queue, SupervisorRef, pipe};
use multiproc::connection::Address;
use multiproc::{
    Backoff, DictProxy, EventProxy, ListProxy, LockProxy, Manager, ManagerConfig, ManagerError,
    NamespaceProxy, Proxy, QueueProxy, Registry, RestartIntensity, Strategy, Supervisor,
    SupervisorEvent, SupervisorFlags, TypedProxy, ValueProxy, function_child, serve_manager,
};

/// A registered server-side type.
struct Counter(i64);

fn counter_types(r: &mut Registry) {
    r.register("Counter", |start: i64| Counter(start))
        .method("add", |c: &mut Counter, by: i64| {
            c.0 += by;
            c.0
        })
        .method("explode", |_: &mut Counter, (): ()| -> i64 {
            panic!("exploded on purpose")
        });
    r.object("jobs", "queue", &(0u64,));
}
multiproc::manager_types!(counter_types);

type Kit = (
    DictProxy<String, i64>,
    ListProxy<i64>,
    NamespaceProxy,
    QueueProxy<String>,
    EventProxy,
    ValueProxy<f64>,
);

/// Uses every built-in type, then says so.
fn use_them(kit: Kit) -> Result<(), ManagerError> {
    let (d, l, ns, q, e, v) = kit;
    d.set(&"a".to_string(), &1)?;
    l.append(&4)?;
    l.set(0, &-1)?;
    ns.set("name", &"child".to_string())?;
    q.put(&"from the child".to_string(), true, None)?;
    v.set(&2.5)?;
    e.set()?;
    Ok(())
}

/// Appends to the list it finds in the dict under "inner".
fn use_nested(d: DictProxy<String, ListProxy<i64>>) -> Result<(), ManagerError> {
    let inner = d
        .get(&"inner".to_string())?
        .ok_or(ManagerError::UnknownName("inner".into()))?;
    inner.append(&42)
}

/// Takes the lock, says so, and holds it until killed.
fn hold(lock: LockProxy, mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    lock.acquire(true, None)?;
    up.send(&"holding")?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Makes `n` rounds of objects of every kind through proxies (a registered type's
/// too), clones them, nests one in another and takes it out again, and drops them.
fn churn(m: &Manager, n: u32) -> Result<(), ManagerError> {
    for i in 0..n {
        let d = m.dict::<u32, ListProxy<u32>>()?;
        let l = m.list(&[i])?;
        let v = m.value(&i)?;
        let c: Proxy = m.create("Counter", &i64::from(i))?;
        c.call::<_, i64>("add", &1i64)?;
        let l2 = l.clone();
        l2.append(&i)?;
        v.set(&(i + 1))?;
        if i % 8 == 0 {
            // In flight inside a managed object: read (a copy stays), then taken out.
            d.set(&0, &l)?;
            let read = d.get(&0)?.ok_or(ManagerError::UnknownName("0".into()))?;
            read.len()?;
            d.remove(&0)?;
        }
    }
    Ok(())
}

/// `churn` in a child, connected by address; sends the object count it then sees.
fn churn_in_child(
    address: Address,
    authkey: Vec<u8>,
    n: u32,
    mut up: Connection,
) -> Result<(), Box<dyn std::error::Error>> {
    let m = Manager::connect(&address, &authkey)?;
    churn(&m, n)?;
    up.send(&m.object_count()?)?;
    Ok(())
}

/// Reads the value, says what it read, waits to be told, drops the proxy, and says
/// how many objects the server then holds.
fn keep_then_drop(
    v: ValueProxy<i64>,
    address: Address,
    authkey: Vec<u8>,
    mut up: Connection,
) -> Result<(), Box<dyn std::error::Error>> {
    up.send(&v.get()?)?;
    let _: String = up.recv()?;
    drop(v);
    let m = Manager::connect(&address, &authkey)?;
    up.send(&m.object_count()?)?;
    Ok(())
}

/// Holds the proxy, once the server has its reference (the count flushes it), until
/// killed.
fn hold_proxy(
    v: ValueProxy<i64>,
    address: Address,
    authkey: Vec<u8>,
    mut up: Connection,
) -> Result<(), Box<dyn std::error::Error>> {
    let m = Manager::connect(&address, &authkey)?;
    m.object_count()?;
    up.send(&v.get()?)?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Takes a proxy out of the queue, uses it, drops it, and says what it read and how
/// many objects the server then holds.
fn take_from_queue(
    q: Queue<ValueProxy<i64>>,
    address: Address,
    authkey: Vec<u8>,
    mut up: Connection,
) -> Result<(), Box<dyn std::error::Error>> {
    let v = q.get(true, Some(Duration::from_secs(10)))?;
    let read = v.get()?;
    v.set(&(read + 1))?;
    drop(v);
    let m = Manager::connect(&address, &authkey)?;
    up.send(&(read, m.object_count()?))?;
    Ok(())
}

/// Decodes its proxy, then exits at once: the `Accept` that takes the proxy's lent
/// credit is still queued on the reference link's thread.
fn exit_at_once(_v: ValueProxy<i64>) {
    std::process::exit(0);
}

multiproc::register!(
    exit_at_once,
    use_them,
    use_nested,
    hold,
    churn_in_child,
    keep_then_drop,
    hold_proxy,
    take_from_queue
);

/// Open file descriptors of `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Polls `f` until it holds or 10 s pass; whether it held. Only for what the server
/// does on its own when a client's connection closes: nothing tells a client that.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Runs `churn` in a child of this manager; the count it saw.
fn churn_child(m: &Manager, n: u32) -> Result<usize, Box<dyn std::error::Error>> {
    let (mut ours, theirs) = pipe(true)?;
    let mut p = Process::new(
        churn_in_child,
        (m.address().clone(), m.authkey().to_vec(), n, theirs),
    );
    p.start()?;
    let count: usize = ours.recv()?;
    check!(p.join()?.is_normal(), "the churning child failed");
    Ok(count)
}

fn every_built_in_type_works_from_a_child() -> TestResult {
    let m = Manager::start().unwrap();
    let name = m.process().unwrap().name().to_string();
    check!(
        name.starts_with("Manager-") && name[8..].parse::<u32>().is_ok(),
        "named {name}"
    );
    let kit: Kit = (
        m.dict().unwrap(),
        m.list(&[0i64, 1, 2]).unwrap(),
        m.namespace().unwrap(),
        m.queue(0).unwrap(),
        m.event().unwrap(),
        m.value(&0.0).unwrap(),
    );
    let mut p = Process::new(use_them, kit.clone());
    p.start().unwrap();
    check!(p.join().unwrap().is_normal(), "the child failed");
    let (d, l, ns, q, e, v) = kit;
    check_eq!(d.get(&"a".to_string()).unwrap(), Some(1));
    check_eq!(d.get(&"b".to_string()).unwrap(), None);
    check_eq!(l.to_vec().unwrap(), vec![-1, 1, 2, 4]);
    check!(
        matches!(l.get(10), Err(ManagerError::Index { index: 10, len: 4 })),
        "index past the end"
    );
    check_eq!(ns.get::<String>("name").unwrap(), Some("child".to_string()));
    check_eq!(
        q.get(true, Some(Duration::from_secs(5))).unwrap(),
        "from the child"
    );
    check!(
        matches!(q.get(false, None), Err(ManagerError::Empty)),
        "the queue is empty"
    );
    check!(
        e.wait(Some(Duration::from_secs(5))).unwrap(),
        "the event is set"
    );
    check_eq!(v.get().unwrap(), 2.5);
    m.shutdown().unwrap();
    Ok(())
}

fn values_larger_than_the_rings_go_by_the_socket() -> TestResult {
    let m = Manager::start().unwrap();
    let v = m.value(&Vec::<u8>::new()).unwrap();
    for size in [0usize, 100, 300 << 10, 3 << 20] {
        let big: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        v.set(&big).unwrap();
        check!(
            v.get().unwrap() == big,
            "a value of {size} bytes came back changed"
        );
    }
    // Over the frame limit: an error for this call, and the link goes on.
    let got = v.set(&vec![1u8; 17 << 20]);
    check!(matches!(got, Err(ManagerError::Encode(_))), "{got:?}");
    check!(v.get().unwrap().len() == 3 << 20, "the last value stays");
    Ok(())
}

fn proxies_nest() -> TestResult {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, ListProxy<i64>>().unwrap();
    let inner = m.list::<i64>(&[]).unwrap();
    d.set(&"inner".to_string(), &inner).unwrap();
    let mut p = Process::new(use_nested, d.clone());
    p.start().unwrap();
    check!(p.join().unwrap().is_normal(), "the child failed");
    check_eq!(inner.to_vec().unwrap(), vec![42]);
    Ok(())
}

fn only_registered_types_and_methods_are_reachable() -> TestResult {
    let m = Manager::builder()
        .types(counter_types)
        .unwrap()
        .start()
        .unwrap();
    let c: Proxy = m.create("Counter", &10i64).unwrap();
    check_eq!(c.call::<_, i64>("add", &5i64).unwrap(), 15);
    let got = c.call::<_, i64>("system", &"rm -rf /");
    check!(
        matches!(&got, Err(ManagerError::UnknownMethod { method, .. }) if method == "system"),
        "{got:?}"
    );
    let got = c.call::<_, i64>("add", &"five");
    check!(matches!(got, Err(ManagerError::Args { .. })), "{got:?}");
    let got = c.call::<_, i64>("explode", &());
    check!(matches!(got, Err(ManagerError::Failed { .. })), "{got:?}");
    check_eq!(c.call::<_, i64>("add", &1i64).unwrap(), 16);
    let got = m.create::<Proxy, _>("os.system", &());
    check!(matches!(got, Err(ManagerError::UnknownType(_))), "{got:?}");
    // A built-in's method with arguments of the wrong shape.
    let d = m.dict::<String, i64>().unwrap();
    let got = d.proxy().call::<_, ()>("set", &5u8);
    check!(matches!(got, Err(ManagerError::Args { .. })), "{got:?}");
    // A published object, by name, of the type asked for.
    let jobs: QueueProxy<u32> = m.lookup("jobs").unwrap();
    jobs.put(&7, true, None).unwrap();
    let got = m.lookup::<DictProxy<u32, u32>>("jobs");
    check!(
        matches!(got, Err(ManagerError::WrongType { .. })),
        "{got:?}"
    );
    check!(
        matches!(
            m.lookup::<Proxy>("nothing"),
            Err(ManagerError::UnknownName(_))
        ),
        "an unknown name"
    );
    Ok(())
}

fn a_dead_manager_is_a_typed_error_never_a_hang() -> TestResult {
    let m = Manager::start().unwrap();
    let q = m.queue::<u32>(0).unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    d.set(&1, &1).unwrap();
    let (connected, is_connected) = std::sync::mpsc::channel();
    let waiter = {
        let q = q.clone();
        std::thread::spawn(move || {
            // Connected (this thread's link made) before the manager dies.
            q.qsize()?;
            connected.send(()).unwrap();
            q.get(true, None)
        })
    };
    is_connected.recv().unwrap();
    // The waiter's get is on its way or waiting; either way it must end.
    m.process().unwrap().kill().unwrap();
    let t0 = Instant::now();
    let got = waiter.join().unwrap();
    check!(
        matches!(got, Err(ManagerError::Gone(_))),
        "the waiting get: {got:?}"
    );
    let got = d.get(&1);
    check!(
        matches!(got, Err(ManagerError::Gone(_) | ManagerError::Connect(_))),
        "a call: {got:?}"
    );
    check!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    Ok(())
}

fn a_lock_whose_holder_dies_is_released_and_the_next_is_told() -> TestResult {
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(hold, (lock.clone(), theirs));
    p.start().unwrap();
    let _: String = ours.recv().unwrap();
    check!(!lock.acquire(false, None).unwrap(), "held by the child");
    p.kill().unwrap();
    p.join().unwrap();
    let got = lock.acquire(true, Some(Duration::from_secs(5)));
    check!(
        matches!(&got, Err(ManagerError::Misuse(m)) if m.contains("died")),
        "{got:?}"
    );
    lock.release().unwrap();
    check!(
        matches!(lock.release(), Err(ManagerError::Misuse(_))),
        "release of an unlocked lock"
    );
    Ok(())
}

fn a_supervised_manager_comes_back_and_named_proxies_reconnect() -> TestResult {
    let address = Address::unique_abstract();
    let config = ManagerConfig::new(address.clone(), b"supervised")
        .types(counter_types)
        .unwrap();
    let flags = SupervisorFlags {
        strategy: Strategy::OneForOne,
        intensity: RestartIntensity {
            max_restarts: 5,
            within: Duration::from_secs(60),
        },
        backoff: Backoff::NONE,
        ..SupervisorFlags::default()
    };
    let sup =
        Supervisor::new(flags).child(function_child("manager", serve_manager, config).unwrap());
    let events = Events::from(sup.events());
    let sup = SupervisorRef::start(sup).unwrap();
    let m = Manager::connect_timeout(&address, b"supervised", Duration::from_secs(10)).unwrap();
    let jobs: QueueProxy<u32> = m.lookup("jobs").unwrap();
    let scratch = m.dict::<u32, u32>().unwrap();
    jobs.put(&1, true, None).unwrap();
    let pid = sup.which_children().unwrap()[0].pid.unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    for e in events {
        if matches!(e, SupervisorEvent::Restarted { .. }) {
            break;
        }
    }
    // Once the new server listens, the proxy found by name reaches the new "jobs".
    let _m = Manager::connect_timeout(&address, b"supervised", Duration::from_secs(10)).unwrap();
    jobs.put(&2, true, None).unwrap();
    check_eq!(jobs.get(false, None).unwrap(), 2);
    check!(
        matches!(scratch.get(&1), Err(ManagerError::Restarted)),
        "an object not found by name went with the old server"
    );
    sup.shutdown();
    Ok(())
}

fn a_wrong_authkey_is_refused() -> TestResult {
    // Port 0: the server takes a free port and tells its owner which.
    let m = Manager::builder()
        .address(Address::tcp("127.0.0.1:0").unwrap())
        .authkey(b"right")
        .start()
        .unwrap();
    check!(
        matches!(m.address(), Address::Tcp(a) if a.port() != 0),
        "{:?}",
        m.address()
    );
    let ok = Manager::connect(m.address(), b"right").unwrap();
    check_eq!(ok.value(&1u8).unwrap().get().unwrap(), 1);
    let got = Manager::connect(m.address(), b"wrong");
    check!(matches!(got, Err(ManagerError::Auth(_))), "{got:?}");
    // The refused client cost the server nothing.
    let again = Manager::connect(m.address(), b"right").unwrap();
    check_eq!(again.value(&2u8).unwrap().get().unwrap(), 2);
    Ok(())
}

fn dropped_proxies_free_their_objects() -> TestResult {
    let m = Manager::builder()
        .types(counter_types)
        .unwrap()
        .start()
        .unwrap();
    let server = m.process().unwrap().pid().unwrap();
    // Warm up first, in this process and in a child: the allocator's arenas, the
    // server's thread stacks and its links' rings are made once.
    churn(&m, 200).unwrap();
    let without_child = fd_count(server);
    churn_child(&m, 200).unwrap();
    // The server closes a dead child's sockets on its own time: polled.
    check!(
        eventually(|| fd_count(server) <= without_child),
        "the warm-up child's fds stayed open in the server"
    );
    let start = m.object_count().unwrap();
    let (fds, rss) = (fd_count(server), rss_kib(server));

    churn(&m, 2000).unwrap();
    check_eq!(m.object_count().unwrap(), start);
    // The child flushed its drops before it counted, so its count is exact.
    check_eq!(churn_child(&m, 2000).unwrap(), start);
    check_eq!(m.object_count().unwrap(), start);

    check!(
        eventually(|| fd_count(server) <= fds),
        "the server's fds grew from {fds} to {}",
        fd_count(server)
    );
    let grown = rss_kib(server).saturating_sub(rss);
    check!(grown < 1024, "the server's RSS grew by {grown} KiB");
    Ok(())
}

fn a_proxy_sent_to_a_child_lives_until_the_child_drops_it() -> TestResult {
    let m = Manager::start().unwrap();
    let start = m.object_count().unwrap();
    let v = m.value(&7i64).unwrap();
    let (mut ours, theirs) = pipe(true).unwrap();
    // Encoded now, decoded when the child starts.
    let mut p = Process::new(
        keep_then_drop,
        (v.clone(), m.address().clone(), m.authkey().to_vec(), theirs),
    );
    drop(v);
    check_eq!(m.object_count().unwrap(), start + 1);
    p.start().unwrap();
    check_eq!(ours.recv::<i64>().unwrap(), 7);
    check_eq!(m.object_count().unwrap(), start + 1);
    ours.send(&"drop").unwrap();
    check_eq!(ours.recv::<usize>().unwrap(), start);
    check_eq!(m.object_count().unwrap(), start);
    check!(p.join().unwrap().is_normal(), "the child failed");
    Ok(())
}

fn a_killed_childs_references_are_released() -> TestResult {
    let m = Manager::start().unwrap();
    let start = m.object_count().unwrap();
    let v = m.value(&3i64).unwrap();
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(
        hold_proxy,
        (v.clone(), m.address().clone(), m.authkey().to_vec(), theirs),
    );
    p.start().unwrap();
    check_eq!(ours.recv::<i64>().unwrap(), 3);
    drop(v);
    check_eq!(m.object_count().unwrap(), start + 1);
    p.kill().unwrap();
    p.join().unwrap();
    // Freed when the server sees the dead child's link close: nothing tells us when.
    check!(
        eventually(|| m.object_count().unwrap() == start),
        "the killed child's object is still there: {} objects, {start} before",
        m.object_count().unwrap()
    );
    Ok(())
}

/// A child that exits right after decoding its proxies has its references released
/// like any other: its exit waits for its reference link to send what it queued.
fn a_child_that_exits_at_once_leaves_no_object_behind() -> TestResult {
    let m = Manager::start().unwrap();
    let start = m.object_count().unwrap();
    let v = m.value(&3i64).unwrap();
    for _ in 0..20 {
        let mut p = Process::new(exit_at_once, v.clone());
        p.start().unwrap();
        p.join().unwrap();
        check_eq!(p.exit_code(), Some(0));
    }
    drop(v);
    // Freed when the server has seen every child's link close and our release.
    check!(
        eventually(|| m.object_count().unwrap() == start),
        "{} objects left, {start} before",
        m.object_count().unwrap()
    );
    Ok(())
}

fn a_proxy_through_a_queue_outlives_its_sender() -> TestResult {
    let m = Manager::start().unwrap();
    let start = m.object_count().unwrap();
    let q: Queue<ValueProxy<i64>> = Queue::new(0)?;
    let v = m.value(&41i64).unwrap();
    q.put(&v, true, None).unwrap();
    drop(v);
    check_eq!(m.object_count().unwrap(), start + 1);
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut p = Process::new(
        take_from_queue,
        (q.clone(), m.address().clone(), m.authkey().to_vec(), theirs),
    );
    p.start().unwrap();
    let (read, count): (i64, usize) = ours.recv().unwrap();
    check_eq!(read, 41);
    check_eq!(count, start);
    check!(p.join().unwrap().is_normal(), "the child failed");
    check_eq!(m.object_count().unwrap(), start);
    Ok(())
}

/// A runtime of the test's own, as async code that uses a manager has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The async API's futures can go to a multi-threaded runtime's tasks.
fn assert_send<T: Send>(_: &T) {}

fn every_built_in_type_works_from_async_code() -> TestResult {
    runtime().block_on(async {
        let m = Manager::start_async().await.unwrap();
        let d = m.dict_async::<String, i64>().await.unwrap();
        let l = m.list_async(&[1i64, 2, 3]).await.unwrap();
        let ns = m.namespace_async().await.unwrap();
        let q = m.queue_async::<String>(0).await.unwrap();
        let e = m.event_async().await.unwrap();
        let v = m.value_async(&1.5f64).await.unwrap();
        assert_send(&d.get_async(&"a".to_string()));
        assert_send(&q.get_async(true, None));
        // A child changes them with the blocking API; this task sees it.
        let mut p = Process::new(
            use_them,
            (
                d.clone(),
                l.clone(),
                ns.clone(),
                q.clone(),
                e.clone(),
                v.clone(),
            ),
        );
        p.start().unwrap();
        check!(
            e.wait_async(Some(Duration::from_secs(10))).await.unwrap(),
            "the child set the event"
        );
        p.join().unwrap();
        check_eq!(d.get_async(&"a".to_string()).await.unwrap(), Some(1));
        d.update_async(&[("b".to_string(), 2)]).await.unwrap();
        check_eq!(
            d.items_async().await.unwrap(),
            vec![("a".to_string(), 1), ("b".to_string(), 2)]
        );
        check_eq!(d.remove_async(&"a".to_string()).await.unwrap(), Some(1));
        check_eq!(l.to_vec_async().await.unwrap(), vec![-1, 2, 3, 4]);
        check_eq!(l.pop_async(None).await.unwrap(), 4);
        let name = ns.get_async::<String>("name").await.unwrap();
        check_eq!(name.as_deref(), Some("child"));
        check_eq!(
            q.get_async(true, Some(Duration::from_secs(5)))
                .await
                .unwrap(),
            "from the child"
        );
        check!(
            matches!(q.get_async(false, None).await, Err(ManagerError::Empty)),
            "an empty queue"
        );
        check_eq!(v.get_async().await.unwrap(), 2.5);
        // Published and found again, by async calls.
        m.publish_async("totals", &d).await.unwrap();
        let found: DictProxy<String, i64> = m.lookup_async("totals").await.unwrap();
        check_eq!(found.get_async(&"b".to_string()).await.unwrap(), Some(2));
        check!(
            matches!(
                m.lookup_async::<ListProxy<i64>>("totals").await,
                Err(ManagerError::WrongType { .. })
            ),
            "a published object of another type"
        );
        // The child's references go when its reference link closes, soon after it
        // exits; this process's with the drops.
        drop((l, ns, q, e, v));
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.object_count_async().await.unwrap() != 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        check_eq!(m.object_count_async().await.unwrap(), 1);
        m.shutdown_async().await.unwrap();
        Ok(())
    })
}

fn a_dropped_async_call_takes_nothing() -> TestResult {
    runtime().block_on(async {
        let m = Manager::start_async().await.unwrap();
        let q = m.queue_async::<u32>(0).await.unwrap();
        // A get that waits, given up by its caller: its connection closes.
        let waited =
            tokio::time::timeout(Duration::from_millis(100), q.get_async(true, None)).await;
        check!(waited.is_err(), "the get waited");
        q.put_async(&7, true, None).await.unwrap();
        check_eq!(q.get_async(false, None).await.unwrap(), 7);
        // The same for a lock's acquire: held here (blocking), waited for, given up.
        let lock = m.lock_async().await.unwrap();
        check!(lock.acquire(false, None).unwrap(), "free");
        let waited =
            tokio::time::timeout(Duration::from_millis(100), lock.acquire_async(true, None)).await;
        check!(waited.is_err(), "the acquire waited");
        lock.release().unwrap();
        // The release may hand the lock to the given-up wait before the server has
        // seen its connection close; its thread then passes the lock on, unharmed.
        check!(
            lock.acquire_async(true, Some(Duration::from_secs(10)))
                .await
                .unwrap(),
            "free again, and nobody died"
        );
        lock.release_async().await.unwrap();
        m.shutdown_async().await.unwrap();
        Ok(())
    })
}

fn an_async_lock_is_its_connections_until_released() -> TestResult {
    runtime().block_on(async {
        let m = Manager::start_async().await.unwrap();
        let lock = m.lock_async().await.unwrap();
        check!(lock.acquire_async(true, None).await.unwrap(), "acquired");
        // Other calls of this process go on other connections meanwhile.
        let d = m.dict_async::<u32, u32>().await.unwrap();
        d.set_async(&1, &1).await.unwrap();
        check!(!lock.acquire(false, None).unwrap(), "held");
        let other = m.lookup_async::<Proxy>("nothing").await;
        check!(
            matches!(other, Err(ManagerError::UnknownName(_))),
            "{other:?}"
        );
        check!(
            !lock
                .acquire_async(true, Some(Duration::from_millis(50)))
                .await
                .unwrap(),
            "still held"
        );
        lock.release_async().await.unwrap();
        check!(
            matches!(lock.release_async().await, Err(ManagerError::Misuse(_))),
            "release of an unlocked lock"
        );
        // Held through another proxy to it, which is then dropped: the connection
        // it kept closes, as a holder's death.
        m.publish_async("the lock", &lock).await.unwrap();
        let again: LockProxy = m.lookup_async("the lock").await.unwrap();
        check!(again.acquire_async(true, None).await.unwrap(), "acquired");
        drop(again);
        let got = lock.acquire(true, Some(Duration::from_secs(5)));
        check!(
            matches!(&got, Err(ManagerError::Misuse(m)) if m.contains("died")),
            "{got:?}"
        );
        lock.release().unwrap();
        m.shutdown_async().await.unwrap();
        Ok(())
    })
}

fn main() {
    common::run(vec![
        trial(
            "dropped_proxies_free_their_objects",
            dropped_proxies_free_their_objects,
        ),
        trial(
            "a_proxy_sent_to_a_child_lives_until_the_child_drops_it",
            a_proxy_sent_to_a_child_lives_until_the_child_drops_it,
        ),
        trial(
            "a_child_that_exits_at_once_leaves_no_object_behind",
            a_child_that_exits_at_once_leaves_no_object_behind,
        ),
        trial(
            "a_killed_childs_references_are_released",
            a_killed_childs_references_are_released,
        ),
        trial(
            "a_proxy_through_a_queue_outlives_its_sender",
            a_proxy_through_a_queue_outlives_its_sender,
        ),
        trial(
            "every_built_in_type_works_from_a_child",
            every_built_in_type_works_from_a_child,
        ),
        trial("proxies_nest", proxies_nest),
        trial(
            "values_larger_than_the_rings_go_by_the_socket",
            values_larger_than_the_rings_go_by_the_socket,
        ),
        trial(
            "only_registered_types_and_methods_are_reachable",
            only_registered_types_and_methods_are_reachable,
        ),
        trial(
            "a_dead_manager_is_a_typed_error_never_a_hang",
            a_dead_manager_is_a_typed_error_never_a_hang,
        ),
        trial(
            "a_lock_whose_holder_dies_is_released_and_the_next_is_told",
            a_lock_whose_holder_dies_is_released_and_the_next_is_told,
        ),
        trial(
            "a_supervised_manager_comes_back_and_named_proxies_reconnect",
            a_supervised_manager_comes_back_and_named_proxies_reconnect,
        ),
        trial("a_wrong_authkey_is_refused", a_wrong_authkey_is_refused),
        trial(
            "every_built_in_type_works_from_async_code",
            every_built_in_type_works_from_async_code,
        ),
        trial(
            "a_dropped_async_call_takes_nothing",
            a_dropped_async_call_takes_nothing,
        ),
        trial(
            "an_async_lock_is_its_connections_until_released",
            an_async_lock_is_its_connections_until_released,
        ),
    ]);
}
