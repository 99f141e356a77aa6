//! Tables of text in aligned columns (the listing commands' output).

/// `rows` (the first the header) with each column as wide as its widest cell, two spaces
/// between columns, one line per row.
pub(crate) fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = [
            ["ID".to_owned(), "NAME".to_owned(), "X".to_owned()],
            ["12".to_owned(), "a".to_owned(), String::new()],
        ];
        assert_eq!(super::aligned(&rows), "ID  NAME  X\n12  a\n");
    }
}
