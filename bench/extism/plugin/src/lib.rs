//! `ping`: `{"msg": string}` in, the same out — what Hearth's echo plugin
//! does, so both runtimes decode and encode the same JSON.

use extism_pdk::{FnResult, Json, plugin_fn};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize)]
struct Ping {
    msg: String,
}

#[plugin_fn]
pub fn ping(Json(input): Json<Ping>) -> FnResult<Json<Ping>> {
    Ok(Json(Ping { msg: input.msg }))
}
