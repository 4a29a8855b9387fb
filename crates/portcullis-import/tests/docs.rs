//! The migration guide's annotation table is generated from
//! `portcullis_import::table::ANNOTATIONS`; this fails when the committed
//! guide differs (`UPDATE_DOCS=1` rewrites the table in place).

use std::path::Path;

const BEGIN: &str = "<!-- BEGIN ANNOTATION TABLE: generated from crates/portcullis-import/src/table.rs (UPDATE_DOCS=1 cargo nextest run -p portcullis-import) -->\n";
const END: &str = "<!-- END ANNOTATION TABLE -->";

#[test]
fn migration_guide_table_matches_the_code() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/migrating-from-ingress-nginx.md");
    let doc = std::fs::read_to_string(&path).expect("docs/migrating-from-ingress-nginx.md");
    let start = doc.find(BEGIN).expect("the BEGIN marker") + BEGIN.len();
    let end = doc.find(END).expect("the END marker");
    let table = portcullis_import::table::markdown();
    if doc[start..end] == table {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let new = format!("{}{}{}", &doc[..start], table, &doc[end..]);
        std::fs::write(&path, new).unwrap();
        return;
    }
    panic!(
        "the annotation table in {} differs from the code; run with UPDATE_DOCS=1:\n{}",
        path.display(),
        pretty_assertions::StrComparison::new(&doc[start..end], &table)
    );
}
