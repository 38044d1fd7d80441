use std::fmt::Display;

use lockmgr::locked;

#[locked(name = "item:{key}")]
fn process<K, T>(key: K, items: &[T]) -> lockmgr::Result<usize>
where
    K: Display,
    T: Clone,
{
    Ok(items.to_vec().len())
}

#[locked(name = "each:{key}")]
fn with_impl_trait(key: impl Display + Copy) -> lockmgr::Result<String> {
    Ok(key.to_string())
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    assert_eq!(process("a", &[1, 2, 3]).unwrap(), 3);
    assert_eq!(process(7u8, &["x"]).unwrap(), 1);
    assert_eq!(with_impl_trait(5).unwrap(), "5");
    // One declaration per function, however many instances it has.
    let names: Vec<_> = lockmgr::declared_locks().iter().map(|d| d.name).collect();
    assert_eq!(names, ["each:{key}", "item:{key}"]);
}
