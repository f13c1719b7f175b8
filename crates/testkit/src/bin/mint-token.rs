//! Prints a test JWT signed with the test kit's RSA key 1 (`keys/rsa1.pem`), or its P-256 key
//! (`keys/ec1.pem`) with `MINT_ALG=ES256`, for benchmarks and manual tries:
//! `mint-token ISSUER AUDIENCE [SUBJECT] [SCOPE]`. Test keys only.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: mint-token ISSUER AUDIENCE [SUBJECT] [SCOPE]");
        std::process::exit(2);
    }
    let subject = args.get(2).map_or("bench-user", String::as_str);
    let scope = args.get(3).map_or("mcp", String::as_str);
    let mut claims = mcpgate_testkit::keys::claims(&args[0], &args[1], subject, scope);
    claims["exp"] = serde_json::json!(mcpgate_testkit::keys::now() + 24 * 3600);
    let key = match std::env::var("MINT_ALG").as_deref() {
        Ok("ES256") => mcpgate_testkit::TestKey::ec("e1"),
        _ => mcpgate_testkit::TestKey::rsa(1, "k1"),
    };
    println!("{}", key.sign(&claims));
}
