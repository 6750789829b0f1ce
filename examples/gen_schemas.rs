//! Compacts a CRD file into the schema catalogue `meshloop` embeds (see
//! `src/manifest/schema.rs`): `dev/gen-schemas.sh` runs it on the pinned Istio CRDs.
//!
//!     cargo run --example gen_schemas -- CRDS.yaml "istio.io/api v1.32.0 ..." > src/manifest/istio-schemas.json

use meshloop::manifest::schema;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(source)) = (args.next(), args.next()) else {
        eprintln!("usage: gen_schemas CRDS.yaml SOURCE-DESCRIPTION");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        eprintln!("gen_schemas: {file}: {e}");
        std::process::exit(1);
    });
    println!(
        "{}",
        schema::compact_text(&text, &source).unwrap_or_else(|e| {
            eprintln!("gen_schemas: {file}: {e}");
            std::process::exit(1);
        })
    );
}
