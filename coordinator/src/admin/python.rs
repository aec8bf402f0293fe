//! A cluster's wheels in pieces: read from a `SetPython` stream within the limits of
//! [`muster_proto::python`], and cut for `GetWheel` and the agents' `FetchWheel`.

use muster_proto::ApiError;
use muster_proto::v1;

use crate::store::Store;

/// One of `cluster`'s wheels, by hash, in pieces of at most [`muster_proto::PIECE_BYTES`] (what
/// `GetWheel` and the agents' `FetchWheel` send).
pub(crate) async fn wheel_pieces(
    store: &dyn Store,
    cluster: &str,
    sha256: &str,
) -> Result<Vec<Vec<u8>>, ApiError> {
    let wheel = store
        .python_wheel(cluster, sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "wheel",
            name: sha256.to_owned(),
        })?;
    Ok(wheel
        .content
        .chunks(muster_proto::PIECE_BYTES)
        .map(<[u8]>::to_vec)
        .collect())
}

/// A SetPython call's cluster, requirements and wheels, from its pieces; stops reading at the
/// limits of [`muster_proto::python`] (the first wheel past them is refused, named).
pub(super) async fn read_python_pieces(
    mut pieces: tonic::Streaming<v1::SetPythonPiece>,
) -> Result<(String, String, Vec<v1::PythonWheel>), ApiError> {
    use muster_proto::python::{MAX_TOTAL_BYTES, MAX_WHEEL_BYTES, MAX_WHEELS};
    let mut cluster = String::new();
    let mut requirements = String::new();
    let mut wheels: Vec<v1::PythonWheel> = Vec::new();
    let mut total = 0usize;
    let mut first = true;
    while let Some(piece) = pieces.message().await.map_err(|status| {
        ApiError::InvalidArgument(format!("reading the wheels: {}", status.message()))
    })? {
        if first {
            cluster = piece.cluster;
            requirements = piece.requirements;
            first = false;
        }
        if piece.wheel_name.is_empty() {
            continue;
        }
        if wheels
            .last()
            .is_none_or(|wheel| wheel.name != piece.wheel_name)
        {
            if wheels.len() == MAX_WHEELS {
                return Err(ApiError::InvalidArgument(format!(
                    "more than {MAX_WHEELS} wheels; at most {MAX_WHEELS} are taken"
                )));
            }
            wheels.push(v1::PythonWheel {
                name: piece.wheel_name.clone(),
                package: piece.wheel_package,
                ..Default::default()
            });
        }
        total += piece.wheel_piece.len();
        let wheel = wheels.last_mut().expect("a wheel was pushed above");
        if wheel.content.len() + piece.wheel_piece.len() > MAX_WHEEL_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "wheel {:?} has more than {MAX_WHEEL_BYTES} bytes; at most {MAX_WHEEL_BYTES} are taken",
                wheel.name
            )));
        }
        if total > MAX_TOTAL_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "the wheels have more than {MAX_TOTAL_BYTES} bytes in all; at most {MAX_TOTAL_BYTES} are taken"
            )));
        }
        wheel.content.extend_from_slice(&piece.wheel_piece);
    }
    Ok((cluster, requirements, wheels))
}
