//! Range queries for `simulate --from-prometheus`: reading a `matrix` answer into series
//! of (time, value), refusing more series than the caller allows (the replay bounds what
//! it buffers) and anything that is not a matrix. Not used by a run.

use super::PromError;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// (Unix seconds, value), in time order as Prometheus sends them.
    pub values: Vec<(f64, f64)>,
}

#[derive(serde::Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<RawSeries>,
}

#[derive(serde::Deserialize)]
struct RawSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

pub fn parse_matrix(body: &[u8], max_series: usize) -> Result<Vec<Series>, PromError> {
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| PromError::Malformed(format!("range answer: {e}")))?;
    if a.status != "success" {
        return Err(PromError::Malformed(format!(
            "range query failed: {}",
            a.error.unwrap_or_default()
        )));
    }
    let data = a
        .data
        .ok_or_else(|| PromError::Malformed("range answer without data".into()))?;
    if data.result_type != "matrix" {
        return Err(PromError::Malformed(format!(
            "range answer is a {}, not a matrix",
            data.result_type
        )));
    }
    if data.result.len() > max_series {
        return Err(PromError::Malformed(format!(
            "{} series, over the limit of {max_series}",
            data.result.len()
        )));
    }
    data.result
        .into_iter()
        .map(|s| {
            let values = s
                .values
                .into_iter()
                .map(|(t, v)| {
                    v.parse::<f64>()
                        .map(|v| (t, v))
                        .map_err(|_| PromError::Malformed(format!("sample value {v:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Series {
                labels: s.metric,
                values,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_matrix_and_bounds_it() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"pod":"a"},"values":[[10,"1"],[40,"0.5"]]},
            {"metric":{"pod":"b"},"values":[[10,"2"]]}]}}"#;
        let s = parse_matrix(body, 2).unwrap();
        assert_eq!(s[0].values, vec![(10.0, 1.0), (40.0, 0.5)]);
        assert_eq!(s[1].labels["pod"], "b");
        assert!(
            parse_matrix(body, 1)
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_matrix(vector, 9).is_err());
    }
}
