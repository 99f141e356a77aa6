//! A file streamed in pieces, for the client streams that carry one (`Upload`, `PutInput`).

use futures_util::Stream;
use tokio::io::AsyncReadExt as _;

/// The bytes of `file` in pieces of `size` bytes (the last one shorter), each read when the
/// one before has been taken: the file is never held whole. A read error ends the stream
/// early, after telling `failed`; the receiver sees fewer bytes than the file has.
pub fn of_file(
    file: tokio::fs::File,
    size: usize,
    failed: impl FnMut(std::io::Error) + Send + 'static,
) -> impl Stream<Item = Vec<u8>> + Send + 'static {
    futures_util::stream::unfold(Some((file, failed)), move |state| async move {
        let (mut file, mut failed) = state?;
        let mut data = vec![0; size.max(1)];
        let mut n = 0;
        while n < data.len() {
            match file.read(&mut data[n..]).await {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    failed(e);
                    return None;
                }
            }
        }
        if n == 0 {
            return None;
        }
        data.truncate(n);
        Some((data, Some((file, failed))))
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    #[tokio::test]
    async fn a_file_comes_in_pieces_of_its_size_and_whole() {
        let path = std::env::temp_dir().join(format!("faasflow-pieces-{}", std::process::id()));
        let bytes: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        let file = tokio::fs::File::open(&path).await.expect("open");
        let pieces: Vec<Vec<u8>> = super::of_file(file, 1000, |_| panic!("no error")).collect().await;
        let _ = std::fs::remove_file(&path);
        assert_eq!(pieces.iter().map(Vec::len).collect::<Vec<_>>(), [1000, 1000, 500]);
        assert_eq!(pieces.concat(), bytes);
    }
}
