//! CEL expressions of policy rules: compiled once, checked against what a decision can see,
//! evaluated against facts built only when an expression needs them.
//!
//! An expression sees:
//! - `claims`: the token's claims (nested ones too: `claims.realm_access.roles`);
//! - `scopes`: the granted scopes (a list of strings);
//! - `subject` and `client_id` (a string, or null);
//! - `method`: the MCP method (`tools/call` …);
//! - `target` (rules only, not the global conditions): `kind` (`tool`, `resource`,
//!   `resource_template`, `prompt`), `name` (name or URI), `uri` (the same, for resources),
//!   `annotations` (`readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint`, each
//!   with MCP's default when left out) and `tags`.
//!
//! Anything else — another variable, a field of `target` or `target.annotations` that does
//! not exist, a function CEL does not have — is a configuration error, so that no rule can
//! silently never match.

use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use cel::{Context, Env, ExecutionError, Program, Value};

use super::{Annotation, Caller, Target};

const VARIABLES: &[&str] = &[
    "claims",
    "scopes",
    "subject",
    "client_id",
    "method",
    "target",
];
const TARGET_FIELDS: &[&str] = &["kind", "name", "uri", "annotations", "tags"];
const ANNOTATION_FIELDS: &[&str] = &[
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
];

/// The CEL environment (the standard library), shared by every expression.
pub(super) fn env() -> Arc<Env> {
    Arc::new(Env::stdlib())
}

/// A compiled expression.
pub(super) struct Expr {
    source: String,
    program: Program,
    env: Arc<Env>,
    /// This expression's id for remembered results.
    memo_id: u64,
    /// Whether it reads only the principal (`claims`, `scopes`, `subject`, `client_id`): its
    /// result is then remembered per principal; otherwise per principal and target, for a
    /// few targets.
    principal_only: bool,
}

/// Most remembered target-dependent results per principal (principals are cached with their
/// token, so this bounds memory: a few KiB per cached principal).
const TARGET_MEMO: usize = 32;

/// Longest remembered key (expression, method and target spelt out).
const MAX_MEMO_KEY: usize = 512;

/// Ids for remembered results; never reused, so no principal can see another policy's.
static NEXT_MEMO_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Compiles and checks `source`. `has_target`: whether `target` is available.
    pub(super) fn compile(env: &Arc<Env>, source: &str, has_target: bool) -> Result<Expr, String> {
        let program = env
            .compile(source)
            .map_err(|e| format!("not a valid CEL expression: {e}"))?;
        check_names(program.expression(), has_target, &mut Vec::new())?;
        check_functions(env, program.expression())?;
        if never_boolean(program.expression()) {
            return Err("the expression does not evaluate to true or false".into());
        }
        check_fields(program.expression())?;
        let principal_only = !program
            .references()
            .variables()
            .iter()
            .any(|v| matches!(*v, "method" | "target"));
        let expr = Expr {
            source: source.to_owned(),
            program,
            env: Arc::clone(env),
            memo_id: NEXT_MEMO_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            principal_only,
        };
        expr.dry_run(has_target)?;
        Ok(expr)
    }

    /// The expression as written.
    pub(super) fn source(&self) -> &str {
        &self.source
    }

    /// Runs the expression on sample facts: a function CEL does not know shows up as an
    /// undeclared reference. (Errors that depend on the token, such as a claim it lacks, do not
    /// count: the sample's claims are empty.)
    fn dry_run(&self, has_target: bool) -> Result<(), String> {
        let principal = crate::Principal::builder(crate::Subject::new("sample"))
            .client_id(crate::ClientId::new("sample"))
            .scopes([crate::Scope::new("sample")])
            .build();
        // Without `claims`, what an expression reads has the same types for every caller: a
        // type error here is one for everyone.
        let reads_claims = self.program.references().has_variable("claims");
        let caller = Caller {
            principal: &principal,
            method: "tools/call",
        };
        let annotations = super::Annotations::default();
        let target = Target::listed(super::Kind::Tool, "sample", Some(&annotations), &[]);
        let mut facts = Facts::new(&caller, has_target.then_some(&target));
        match self.program.execute(facts.context(&self.env)) {
            Err(ExecutionError::UndeclaredReference(name))
                if !VARIABLES.contains(&name.as_str()) =>
            {
                Err(format!(
                    "`{name}` is not a CEL function or name available here"
                ))
            }
            Err(e) if !reads_claims && fails_for_everyone(&e) => Err(format!(
                "the expression fails for every caller ({e}), so it never holds"
            )),
            Ok(Value::Bool(_)) | Err(_) => Ok(()),
            Ok(other) => Err(format!(
                "the expression evaluates to {}, not to true or false",
                type_name(&other)
            )),
        }
    }

    /// Evaluates to a boolean; anything else (another type, an error) is an error.
    pub(super) fn eval(&self, facts: &mut Facts<'_>) -> Result<bool, String> {
        let vals = facts.vals();
        if self.principal_only {
            if let Some(known) = vals.memo.lock().expect("memo lock").get(&self.memo_id) {
                return known.clone();
            }
            let result = self.run(facts);
            vals.memo
                .lock()
                .expect("memo lock")
                .insert(self.memo_id, result.clone());
            return result;
        }
        // Everything the expression can read besides the principal, spelt out in full: no
        // hash collision can make one target's result another's. Long keys (long target
        // names) are not remembered, which keeps a principal's memory to a few KiB.
        let key = facts.target_key(self.memo_id);
        if key.len() > MAX_MEMO_KEY {
            return self.run(facts);
        }
        if let Some(known) = vals
            .target_memo
            .lock()
            .expect("memo lock")
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, r)| r.clone())
        {
            return known;
        }
        let result = self.run(facts);
        let mut memo = vals.target_memo.lock().expect("memo lock");
        if memo.len() >= TARGET_MEMO {
            memo.pop_front();
        }
        memo.push_back((key, result.clone()));
        result
    }

    fn run(&self, facts: &mut Facts<'_>) -> Result<bool, String> {
        match self.program.execute(facts.context(&self.env)) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("evaluated to {other:?}, not a boolean")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Errors that come from the expression's types, not from the caller's values (a missing key
/// or index may exist for another caller; a type error cannot).
fn fails_for_everyone(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::UnexpectedType { .. }
            | ExecutionError::NoSuchOverload(_)
            | ExecutionError::MissingArgumentOrTarget
            | ExecutionError::ValuesNotComparable(..)
            | ExecutionError::UnsupportedBinaryOperator(..)
            | ExecutionError::UnsupportedIndex(..)
            | ExecutionError::DivisionByZero(_)
            | ExecutionError::RemainderByZero(_)
            | ExecutionError::DuplicateKey(_)
    )
}

/// Type names an expression may use as values (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

/// Checks every name the expression reads: the variables policy expressions see, the
/// variables a macro such as `exists(s, …)` binds, and type names. `bound`: the names bound
/// by enclosing comprehensions.
fn check_names(expr: &IdedExpr, has_target: bool, bound: &mut Vec<String>) -> Result<(), String> {
    let all = |list: &[&IdedExpr], bound: &mut Vec<String>| {
        list.iter()
            .try_for_each(|e| check_names(e, has_target, bound))
    };
    match &expr.expr {
        Ast::Ident(name) => {
            if name.starts_with('@') || bound.iter().any(|b| b == name) {
                return Ok(());
            }
            if name == "target" && !has_target {
                return Err(
                    "`target` is not available here: global conditions apply to every request, whatever its target".into(),
                );
            }
            if VARIABLES.contains(&name.as_str()) || TYPE_NAMES.contains(&name.as_str()) {
                return Ok(());
            }
            Err(format!(
                "`{name}` is not available to policy expressions (they see {})",
                VARIABLES.join(", ")
            ))
        }
        Ast::Select(select) => check_names(&select.operand, has_target, bound),
        Ast::Call(call) => {
            if let Some(t) = &call.target {
                check_names(t, has_target, bound)?;
            }
            all(&call.args.iter().collect::<Vec<_>>(), bound)
        }
        Ast::Comprehension(c) => {
            all(&[&c.iter_range, &c.accu_init], bound)?;
            let before = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                bound.push(v.clone());
            }
            bound.push(c.accu_var.clone());
            let inner = all(&[&c.loop_cond, &c.loop_step, &c.result], bound);
            bound.truncate(before);
            inner
        }
        Ast::List(list) => all(&list.elements.iter().collect::<Vec<_>>(), bound),
        Ast::Map(map) => map.entries.iter().try_for_each(|e| match &e.expr {
            EntryExpr::MapEntry(m) => all(&[&m.key, &m.value], bound),
            EntryExpr::StructField(f) => check_names(&f.value, has_target, bound),
        }),
        Ast::Struct(s) => s.entries.iter().try_for_each(|e| match &e.expr {
            EntryExpr::MapEntry(m) => all(&[&m.key, &m.value], bound),
            EntryExpr::StructField(f) => check_names(&f.value, has_target, bound),
        }),
        Ast::Literal(_) | Ast::Unspecified => Ok(()),
    }
}

/// Every function the expression calls exists in CEL's standard library: each is called once
/// on `null` arguments, where an unknown name is an undeclared reference and a known one at
/// worst a type error. (Operators, which the parser names `_+_`, `!_`, `@in` …, always exist.)
fn check_functions(env: &Arc<Env>, expr: &IdedExpr) -> Result<(), String> {
    let mut names: Vec<(&str, bool, usize)> = Vec::new();
    collect_calls(expr, &mut names);
    for (name, member, arity) in names {
        if name.starts_with('_') || name.starts_with('@') || name.ends_with('_') {
            continue;
        }
        let args = vec!["null"; arity].join(", ");
        let probe = if member {
            format!("null.{name}({args})")
        } else {
            format!("{name}({args})")
        };
        let Ok(program) = env.compile(&probe) else {
            continue;
        };
        let context = Context::with_env(Arc::clone(env));
        if let Err(ExecutionError::UndeclaredReference(n)) = program.execute(&context)
            && n.as_str() == name
        {
            return Err(format!(
                "`{name}` is not a CEL function (the standard library's are size, contains, startsWith, endsWith, exists, all, has, …)"
            ));
        }
    }
    Ok(())
}

fn collect_calls<'e>(expr: &'e IdedExpr, out: &mut Vec<(&'e str, bool, usize)>) {
    match &expr.expr {
        Ast::Call(call) => {
            out.push((&call.func_name, call.target.is_some(), call.args.len()));
            if let Some(t) = &call.target {
                collect_calls(t, out);
            }
            call.args.iter().for_each(|a| collect_calls(a, out));
        }
        Ast::Select(select) => collect_calls(&select.operand, out),
        Ast::Comprehension(c) => {
            for e in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                collect_calls(e, out);
            }
        }
        Ast::List(list) => list.elements.iter().for_each(|e| collect_calls(e, out)),
        Ast::Map(map) => map.entries.iter().for_each(|e| match &e.expr {
            EntryExpr::MapEntry(m) => {
                collect_calls(&m.key, out);
                collect_calls(&m.value, out);
            }
            EntryExpr::StructField(f) => collect_calls(&f.value, out),
        }),
        Ast::Struct(s) => s.entries.iter().for_each(|e| match &e.expr {
            EntryExpr::MapEntry(m) => {
                collect_calls(&m.key, out);
                collect_calls(&m.value, out);
            }
            EntryExpr::StructField(f) => collect_calls(&f.value, out),
        }),
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => {}
    }
}

/// Whether the expression can be seen, without running it, never to be a boolean: a literal
/// that is not one, a list or map, arithmetic, or a conversion to another type.
fn never_boolean(expr: &IdedExpr) -> bool {
    use cel::common::ast::LiteralValue;
    match &expr.expr {
        Ast::Literal(l) => !matches!(l, LiteralValue::Boolean(_)),
        Ast::List(_) | Ast::Map(_) | Ast::Struct(_) => true,
        Ast::Call(call) => match call.func_name.as_str() {
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "-_" | "size" | "int" | "uint" | "double"
            | "string" | "bytes" | "type" => true,
            "_?_:_" => {
                call.args.len() == 3 && never_boolean(&call.args[1]) && never_boolean(&call.args[2])
            }
            _ => false,
        },
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "an integer",
        Value::UInt(_) => "an unsigned integer",
        Value::Float(_) => "a number",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Null => "null",
        _ => "a value that is not a boolean",
    }
}

/// Checks `target.X` and `target.annotations.Y` against what targets have.
fn check_fields(expr: &IdedExpr) -> Result<(), String> {
    match &expr.expr {
        Ast::Select(select) => {
            if let Ast::Ident(root) = &select.operand.expr
                && root == "target"
                && !TARGET_FIELDS.contains(&select.field.as_str())
            {
                return Err(format!(
                    "`target.{}` does not exist (targets have {})",
                    select.field,
                    TARGET_FIELDS.join(", ")
                ));
            }
            if let Ast::Select(inner) = &select.operand.expr
                && let Ast::Ident(root) = &inner.operand.expr
                && root == "target"
                && inner.field == "annotations"
                && !ANNOTATION_FIELDS.contains(&select.field.as_str())
            {
                return Err(format!(
                    "`target.annotations.{}` does not exist (annotations are {})",
                    select.field,
                    ANNOTATION_FIELDS.join(", ")
                ));
            }
            check_fields(&select.operand)
        }
        Ast::Call(call) => {
            if let Some(t) = &call.target {
                check_fields(t)?;
            }
            call.args.iter().try_for_each(check_fields)
        }
        Ast::Comprehension(c) => {
            for e in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                check_fields(e)?;
            }
            Ok(())
        }
        Ast::List(list) => list.elements.iter().try_for_each(check_fields),
        Ast::Map(map) => map.entries.iter().try_for_each(|e| match &e.expr {
            EntryExpr::MapEntry(m) => {
                check_fields(&m.key)?;
                check_fields(&m.value)
            }
            EntryExpr::StructField(f) => check_fields(&f.value),
        }),
        Ast::Struct(s) => s.entries.iter().try_for_each(|e| match &e.expr {
            EntryExpr::MapEntry(m) => {
                check_fields(&m.key)?;
                check_fields(&m.value)
            }
            EntryExpr::StructField(f) => check_fields(&f.value),
        }),
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => Ok(()),
    }
}

/// An expression's remembered result.
type Remembered = Result<bool, String>;

/// A principal's claims and scopes as CEL values, converted once and then lent to every
/// expression that reads them (through a variable resolver: no copy per decision).
#[derive(Debug)]
pub struct Vals {
    claims: Box<dyn cel::common::value::Val>,
    scopes: Box<dyn cel::common::value::Val>,
    /// Results of expressions that read only the principal.
    memo: std::sync::Mutex<std::collections::HashMap<u64, Result<bool, String>>>,
    /// Results of expressions that read the request too, for the most recent targets.
    target_memo: std::sync::Mutex<std::collections::VecDeque<(Vec<u8>, Remembered)>>,
}

impl Vals {
    fn of(p: &crate::Principal) -> Vals {
        let claims = serde_json::Value::Object(p.claims.clone());
        let claims = cel::to_value(&claims).unwrap_or(Value::Null);
        let scopes = Value::from(
            p.scopes
                .iter()
                .map(|s| Value::from(s.as_str().to_owned()))
                .collect::<Vec<Value>>(),
        );
        let null = || -> Box<dyn cel::common::value::Val> {
            Value::Null.try_into().expect("null converts")
        };
        Vals {
            claims: claims.try_into().unwrap_or_else(|_| null()),
            scopes: scopes.try_into().unwrap_or_else(|_| null()),
            memo: std::sync::Mutex::new(std::collections::HashMap::new()),
            target_memo: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }
}

impl cel::context::VariableResolver for Vals {
    fn resolve<'b>(&'b self, variable: &str) -> Option<cel::common::value::CowVal<'b, 'b>> {
        match variable {
            "claims" => Some(cel::common::value::CowVal::Borrowed(self.claims.as_ref())),
            "scopes" => Some(cel::common::value::CowVal::Borrowed(self.scopes.as_ref())),
            _ => None,
        }
    }
}

/// What expressions see, built on first use and reused by every expression of a decision.
pub(super) struct Facts<'a> {
    caller: &'a Caller<'a>,
    target: Option<&'a Target<'a>>,
    context: Option<Context<'a, 'a>>,
}

impl<'a> Facts<'a> {
    pub(super) fn new(caller: &'a Caller<'a>, target: Option<&'a Target<'a>>) -> Self {
        Facts {
            caller,
            target,
            context: None,
        }
    }

    /// The request's part of a remembered result's key: expression, method and target, each
    /// variable-length part preceded by its length (so that no two requests share a key),
    /// written byte by byte rather than formatted: this runs on every governed call.
    fn target_key(&self, expr: u64) -> Vec<u8> {
        fn part(key: &mut Vec<u8>, bytes: &[u8]) {
            // A part longer than u32::MAX bytes makes a key over MAX_MEMO_KEY, never kept.
            key.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
            key.extend_from_slice(bytes);
        }
        let mut key = Vec::with_capacity(64);
        key.extend_from_slice(&expr.to_le_bytes());
        part(&mut key, self.caller.method.as_bytes());
        if let Some(t) = self.target {
            key.push(1);
            let a = t.annotations.copied().unwrap_or_default();
            for hint in [a.read_only, a.destructive, a.idempotent, a.open_world] {
                key.push(match hint {
                    None => 0,
                    Some(false) => 1,
                    Some(true) => 2,
                });
            }
            part(&mut key, t.kind.as_str().as_bytes());
            part(&mut key, t.name.as_bytes());
            for tag in t.tags {
                part(&mut key, tag.as_bytes());
            }
        } else {
            key.push(0);
        }
        key
    }

    /// The principal's converted claims and scopes (made on first use).
    fn vals(&self) -> &'a Arc<Vals> {
        let p: &'a crate::Principal = self.caller.principal;
        p.facts.0.get_or_init(|| Arc::new(Vals::of(p)))
    }

    fn context(&mut self, env: &Arc<Env>) -> &Context<'a, 'a> {
        if self.context.is_none() {
            let mut ctx = Context::with_env(Arc::clone(env));
            let p: &'a crate::Principal = self.caller.principal;
            let vals: &'a Arc<Vals> = p.facts.0.get_or_init(|| Arc::new(Vals::of(p)));
            ctx.set_variable_resolver(vals.as_ref());
            ctx.add_variable_from_value("subject", p.subject.as_str().to_owned());
            ctx.add_variable_from_value(
                "client_id",
                match &p.client_id {
                    Some(c) => Value::from(c.as_str().to_owned()),
                    None => Value::Null,
                },
            );
            ctx.add_variable_from_value("method", self.caller.method.to_owned());
            if let Some(t) = self.target {
                let annotations = t.annotations.copied().unwrap_or_default();
                let mut a = std::collections::HashMap::new();
                for an in [
                    Annotation::ReadOnly,
                    Annotation::Destructive,
                    Annotation::Idempotent,
                    Annotation::OpenWorld,
                ] {
                    a.insert(an.name().to_owned(), Value::Bool(annotations.get(an)));
                }
                let mut m: std::collections::HashMap<String, Value> =
                    std::collections::HashMap::new();
                m.insert("kind".into(), Value::from(t.kind.as_str().to_owned()));
                m.insert("name".into(), Value::from(t.name.to_owned()));
                m.insert("uri".into(), Value::from(t.name.to_owned()));
                m.insert("annotations".into(), Value::from(a));
                m.insert(
                    "tags".into(),
                    Value::from(
                        t.tags
                            .iter()
                            .map(|s| Value::from(s.clone()))
                            .collect::<Vec<Value>>(),
                    ),
                );
                ctx.add_variable_from_value("target", Value::from(m));
            }
            self.context = Some(ctx);
        }
        self.context.as_ref().expect("just built")
    }
}
