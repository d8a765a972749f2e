//! The typed proxies to the built-in objects (Python's `DictProxy`, `ListProxy`,
//! …): each a [`Proxy`] and the methods of its type, one file each.

mod dict;
mod event;
mod list;
mod lock;
mod namespace;
mod queue;
mod value;

pub use dict::DictProxy;
pub use event::EventProxy;
pub use list::ListProxy;
pub use lock::LockProxy;
pub use namespace::NamespaceProxy;
pub use queue::QueueProxy;
pub use value::ValueProxy;

/// Declares a typed proxy: a [`Proxy`] wrapper that encodes as the proxy does.
macro_rules! typed_proxy {
    ($(#[$doc:meta])* $name:ident<$($t:ident),*>, $typeid:literal) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize)]
        #[serde(transparent, bound = "")]
        pub struct $name<$($t),*> {
            proxy: Proxy,
            #[serde(skip)]
            _t: PhantomData<fn($($t),*)>,
        }

        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { proxy: self.proxy.clone(), _t: PhantomData }
            }
        }

        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.proxy).finish()
            }
        }

        impl<$($t),*> TypedProxy for $name<$($t),*> {
            const TYPEID: &'static str = $typeid;
            fn from_proxy(proxy: Proxy) -> Self {
                $name { proxy, _t: PhantomData }
            }
            fn proxy(&self) -> &Proxy {
                &self.proxy
            }
        }
    };
}

use typed_proxy;
