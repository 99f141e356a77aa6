//! [`Pack`]: the functions one executable serves.

use std::fmt;
use std::sync::Arc;

use faasflow_shm::frame::MAX_NAME;
use faasflow_shm::handshake::MAX_FUNCTIONS;

use crate::{Context, Error};

/// A registered function.
pub(crate) type Handler = Arc<dyn Fn(&mut Context<'_>) -> Result<(), Error> + Send + Sync + 'static>;

/// The functions of one pack binary, by name. Build it in `main` and hand it to
/// [`serve`](crate::serve).
///
/// ```
/// use faasflow_sdk::{Context, Error, Pack};
///
/// fn upper(ctx: &mut Context<'_>) -> Result<(), Error> {
///     let text = ctx.input("text")?;
///     ctx.output_with("text", text.len(), |buf| {
///         buf.copy_from_slice(text);
///         buf.make_ascii_uppercase();
///     })
/// }
///
/// let pack = Pack::new("example")
///     .function("upper", upper)
///     .function("noop", |_ctx| Ok(()));
/// assert_eq!(pack.name(), "example");
/// assert_eq!(pack.function_names().collect::<Vec<_>>(), ["upper", "noop"]);
/// ```
#[derive(Clone)]
pub struct Pack {
    name: String,
    functions: Vec<(String, Handler)>,
}

impl fmt::Debug for Pack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pack")
            .field("name", &self.name)
            .field("functions", &self.function_names().collect::<Vec<_>>())
            .finish()
    }
}

impl Pack {
    /// An empty pack called `name` (the `pack:` of the functions in a workflow).
    ///
    /// # Panics
    /// If `name` is empty or longer than 255 bytes.
    /// ```
    /// let pack = faasflow_sdk::Pack::new("images");
    /// assert_eq!(pack.function_names().count(), 0);
    /// ```
    pub fn new(name: impl Into<String>) -> Pack {
        let name = name.into();
        assert!(
            !name.is_empty() && name.len() <= MAX_NAME,
            "a pack name must have 1 to {MAX_NAME} bytes, `{name}` has {}",
            name.len()
        );
        Pack {
            name,
            functions: Vec::new(),
        }
    }

    /// Registers `function` under `name`. A plain `fn(&mut Context) -> Result<(), Error>` or a
    /// closure.
    ///
    /// # Panics
    /// If `name` is already registered, is empty or longer than 255 bytes, or the pack already
    /// has the most functions a pack may have (4096): these are mistakes in the pack's code.
    /// ```should_panic
    /// faasflow_sdk::Pack::new("p").function("f", |_| Ok(())).function("f", |_| Ok(()));
    /// ```
    pub fn function<F>(mut self, name: &str, function: F) -> Pack
    where
        F: Fn(&mut Context<'_>) -> Result<(), Error> + Send + Sync + 'static,
    {
        assert!(
            !name.is_empty() && name.len() <= MAX_NAME,
            "pack `{}`: a function name must have 1 to {MAX_NAME} bytes, `{name}` has {}",
            self.name,
            name.len()
        );
        assert!(
            !self.functions.iter().any(|(n, _)| n == name),
            "pack `{}`: function `{name}` is registered twice",
            self.name
        );
        assert!(
            self.functions.len() < MAX_FUNCTIONS,
            "pack `{}`: more than {MAX_FUNCTIONS} functions",
            self.name
        );
        self.functions.push((name.to_owned(), Arc::new(function)));
        self
    }

    /// The pack's name.
    /// ```
    /// assert_eq!(faasflow_sdk::Pack::new("images").name(), "images");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The functions' names, in registration order (the order the daemon indexes them by).
    /// ```
    /// let pack = faasflow_sdk::Pack::new("p").function("b", |_| Ok(())).function("a", |_| Ok(()));
    /// assert_eq!(pack.function_names().collect::<Vec<_>>(), ["b", "a"]);
    /// ```
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().map(|(n, _)| n.as_str())
    }

    /// The function with index `index`, and its name.
    pub(crate) fn get(&self, index: u32) -> Option<(&str, &Handler)> {
        let (name, f) = self.functions.get(usize::try_from(index).ok()?)?;
        Some((name, f))
    }

    /// The function called `name`.
    pub(crate) fn find(&self, name: &str) -> Option<&Handler> {
        self.functions.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    pub(crate) fn len(&self) -> usize {
        self.functions.len()
    }
}
