//! The seed's manager example: a server process holds a dict and a list; a child
//! fills the dict and reverses the list through proxies; the parent prints both.
//!
//! ```text
//! {1: '1', '2': 2, 0.25: None}
//! [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//! ```
//!
//! (Python 2 printed the dict as `{0.25: None, 1: '1', '2': 2}`, in hash order;
//! the manager keeps insertion order, as Python 3.7+ dicts do.)

use multiproc::blocking::Process;
use multiproc::{DictProxy, Dynamic, ListProxy, Manager, ManagerError};

fn f(d: DictProxy<Dynamic, Dynamic>, l: ListProxy<i64>) -> Result<(), ManagerError> {
    d.set(&1.into(), &"1".into())?;
    d.set(&"2".into(), &2.into())?;
    d.set(&0.25.into(), &Dynamic::None)?;
    l.reverse()
}
multiproc::register!(f);

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = Manager::start()?;
    let d = manager.dict::<Dynamic, Dynamic>()?;
    let l = manager.list(&(0..10).collect::<Vec<i64>>())?;
    let mut p = Process::new(f, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;
    println!("{}", Dynamic::Dict(d.items()?));
    println!("{:?}", l.to_vec()?);
    manager.shutdown()?;
    Ok(())
}
