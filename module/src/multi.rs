//! The multi-scope commands: MCHECK, MPEEK, MSETTLE, MCANCEL, and their replicated forms MAPPLY
//! and MLOAD. Each opens every key it names, decides with `llmrl-core` (all or nothing), then
//! applies the effects through `keyspace`, which expires, signals and replicates them.

use crate::keyspace::{self, commit_scope, ScopeReplication};
use crate::reply;
use crate::stats;
use llmrl_core::args::parse_u64;
use llmrl_core::error::CommandError;
use llmrl_core::multi::args::{
    parse_mcancel, parse_mcheck_into, parse_msettle, CorrectionArgs, MultiCheckArgs,
};
use llmrl_core::multi::{decide_into, plan_correction, MultiDecision, PerScope};
use llmrl_core::scope::encoding::{decode, unpack_effect};
use llmrl_core::scope::{Clock, ScopeEffect, ScopeState};
use redis_module::key::RedisKeyWritable;
use redis_module::{Context, RedisString};
use std::mem::ManuallyDrop;

type Keys = [ManuallyDrop<RedisString>];

/// A key named twice would be two scopes over one state: refused.
fn distinct(keys: &Keys) -> Result<(), CommandError> {
    for (i, key) in keys.iter().enumerate() {
        if keys
            .iter()
            .skip(i + 1)
            .any(|other| other.as_slice() == key.as_slice())
        {
            return Err(CommandError::Syntax("a key is named twice"));
        }
    }
    Ok(())
}

fn open_all(ctx: &Context, keys: &Keys) -> PerScope<RedisKeyWritable> {
    keys.iter().map(|key| ctx.open_key_writable(key)).collect()
}

/// Every scope's state, or `None` for a key that does not exist yet.
fn states(open: &[RedisKeyWritable]) -> Result<PerScope<Option<&ScopeState>>, CommandError> {
    let mut states = PerScope::new();
    for key in open {
        states.push(keyspace::read_mut::<ScopeState>(key)?.map(|state| &*state));
    }
    Ok(states)
}

fn check(ctx: &Context, keys: &Keys, args: &[&[u8]], record: bool) -> Result<(), CommandError> {
    let name = if record {
        "llmrl.mcheck"
    } else {
        "llmrl.mpeek"
    };
    // Filled in place (see `parse_mcheck_into` and `decide_into`).
    let mut request = MultiCheckArgs::default();
    parse_mcheck_into(name, keys.len(), args, &mut request)?;
    distinct(keys)?;
    let now = keyspace::now_ms()?;
    let open = open_all(ctx, keys);
    // A peek needs no lease: it takes no slot.
    let lease = if record {
        request.lease_ms
    } else {
        request.lease_ms.or(Some(1))
    };
    let mut decision = MultiDecision::default();
    decide_into(&states(&open)?, &request.scopes, now, lease, &mut decision)?;
    if record {
        stats::MCHECKS.incr();
        if decision.allowed {
            stats::MALLOWED.incr();
            let effects = decision.effects(&request.scopes);
            let commits = open.into_iter().zip(keys).zip(&request.scopes).zip(effects);
            let mut replication = ScopeReplication::new(ctx);
            for (((key, name), scope), effect) in commits {
                commit_scope(ctx, key, name, scope.clock, &effect, c"llmrl.mcheck")?;
                replication.push(name, scope.clock, &effect);
            }
            replication.send();
        } else {
            stats::MDENIED.incr();
        }
    } else {
        stats::PEEKS.incr();
    }
    reply::multi_decision(ctx, &decision, request.detail);
    Ok(())
}

pub fn mcheck(ctx: &Context, keys: &Keys, args: &[&[u8]]) -> Result<(), CommandError> {
    check(ctx, keys, args, true)
}

pub fn mpeek(ctx: &Context, keys: &Keys, args: &[&[u8]]) -> Result<(), CommandError> {
    check(ctx, keys, args, false)
}

/// Plan every scope's correction first (any error changes nothing), then apply them all.
fn correct(ctx: &Context, keys: &Keys, correction: CorrectionArgs) -> Result<(), CommandError> {
    distinct(keys)?;
    let now = keyspace::now_ms()?;
    let open = open_all(ctx, keys);
    let mut planned: PerScope<Option<(ScopeEffect, llmrl_core::scope::Clock)>> = PerScope::new();
    for ((state, reserved), actual) in states(&open)?
        .into_iter()
        .zip(&correction.reserved)
        .zip(&correction.actual)
    {
        let effect = plan_correction(state, now, correction.ticket, *reserved, *actual)?;
        planned.push(effect.zip(state.map(ScopeState::clock)));
    }
    let mut replication = ScopeReplication::new(ctx);
    for ((key, name), plan) in open.into_iter().zip(keys).zip(&planned) {
        if let Some((effect, clock)) = plan {
            commit_scope(ctx, key, name, *clock, effect, c"llmrl.msettle")?;
            replication.push(name, *clock, effect);
        }
    }
    let corrected = replication.len();
    replication.send();
    reply::integer(ctx, corrected as i64);
    Ok(())
}

pub fn msettle(ctx: &Context, keys: &Keys, args: &[&[u8]]) -> Result<(), CommandError> {
    let correction = parse_msettle("llmrl.msettle", keys.len(), args)?;
    stats::MSETTLES.incr();
    correct(ctx, keys, correction)
}

pub fn mcancel(ctx: &Context, keys: &Keys, args: &[&[u8]]) -> Result<(), CommandError> {
    let correction = parse_mcancel("llmrl.mcancel", keys.len(), args)?;
    stats::MCANCELS.incr();
    correct(ctx, keys, correction)
}

/// `LLMRL.MAPPLY numkeys key [key ...] effect [effect ...]`: the scopes' effects of one call as
/// the primary replicated them (each packed with its key's clock).
pub fn mapply(ctx: &Context, keys: &Keys, args: &[&[u8]]) -> Result<(), CommandError> {
    if args.len() != keys.len() {
        return Err(CommandError::WrongArity("llmrl.mapply"));
    }
    distinct(keys)?;
    // Decode everything before changing anything.
    let effects = args
        .iter()
        .map(|packed| unpack_effect(packed).map_err(|_| CommandError::MalformedEffect))
        .collect::<Result<PerScope<(Clock, ScopeEffect)>, _>>()?;
    let open = open_all(ctx, keys);
    for (state, (clock, _)) in states(&open)?.iter().zip(&effects) {
        if state.is_some_and(|state| state.clock() != *clock) {
            return Err(CommandError::ClockMismatch(0));
        }
    }
    stats::APPLIES.incr();
    let mut replication = ScopeReplication::new(ctx);
    for ((key, name), (clock, effect)) in open.into_iter().zip(keys).zip(&effects) {
        // A correction of a key that no longer exists changes nothing and creates nothing.
        let exists = keyspace::read_mut::<ScopeState>(&key)?.is_some();
        let creates = effect.charge != [0; 4] || effect.lease.is_some();
        if exists || creates {
            commit_scope(ctx, key, name, *clock, effect, c"llmrl.mapply")?;
            replication.push(name, *clock, effect);
        }
    }
    replication.send();
    ctx.reply_simple_string("OK");
    Ok(())
}

/// `LLMRL.MLOAD key numbers...`: replace a key with exactly this scope (what an AOF rewrite
/// emits; see `llmrl_core::scope::encoding`).
pub fn mload(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let numbers = args
        .iter()
        .map(|arg| parse_u64(arg, "number"))
        .collect::<Result<Vec<u64>, _>>()?;
    let mut source = numbers.into_iter();
    let state = decode(|| source.next()).map_err(|_| CommandError::InvalidState("not a scope"))?;
    if source.next().is_some() {
        return Err(CommandError::WrongArity("llmrl.mload"));
    }
    let expire = state.expire_at_ms();
    keyspace::replace(ctx, key_name, state, expire)
}
