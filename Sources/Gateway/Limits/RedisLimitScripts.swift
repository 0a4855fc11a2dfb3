/// The Lua scripts that keep per-key limits in Redis, each run atomically in one round trip
/// (`EVAL`; Redis caches the compiled script by its hash). They compute exactly what
/// `RateLimitMath` computes, in the same order of double operations (`RedisLimiterParityTests`
/// runs both on the same sequences and compares every figure).
///
/// Clock: Redis' `TIME` (one clock for every replica) for the buckets and holds, unless a test
/// passes its own `now`. Which day's and month's spend counter a budget reads is the replica's
/// choice (`BudgetPeriods` from its own clock, in the keys it passes): replicas whose clocks
/// disagree split the spend around midnight UTC by their skew.
/// Buckets are strings `"<level %.17g> <updated µs>"` (a double survives the round trip exactly),
/// expiring when they would be full again; spend counters are integers (millionths of a dollar)
/// expiring after their day or month.
enum RedisLimitScripts {
    /// Shared helpers: the clock and the bucket level.
    private static let prelude = """
        local period = 60000000
        local now
        if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
          local t = redis.call('TIME')
          now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        end
        -- RateLimitMath.deepestLevel and maxReportedMicros: a day of debt at most, and every
        -- wait and reset within 2^53 (Redis turns a larger number into garbage).
        local function deepest(limit) return -limit * 1440 end
        local function reported(value) return math.max(-9007199254740992, math.min(9007199254740992, value)) end
        local function level_at(key, limit)
          local stored = redis.call('GET', key)
          if not stored then return limit end
          local level, updated = string.match(stored, '^(%S+) (%d+)$')
          level = tonumber(level)
          updated = tonumber(updated)
          if not level or not updated or level ~= level then return limit end
          local elapsed = now - updated
          if elapsed < 0 then elapsed = 0 end
          return math.max(deepest(limit), math.min(limit, level + elapsed * limit / period))
        end
        local function store(key, level, limit)
          local per_unit = period / limit
          local reset = math.ceil((limit - level) * per_unit)
          if reset <= 0 then
            redis.call('DEL', key)
          else
            redis.call('SET', key, string.format('%.17g %d', level, now), 'PX', math.ceil(reset / 1000) + 1000)
          end
        end
        -- A spend counter holds the digits INCRBY wrote: anything else (text, a fraction, a
        -- negative number) is the script's error, so `on_store_error` decides, never a budget
        -- read as nothing spent (review 114 #1, #4).
        -- As Redis' INCRBY reads one (no sign, no leading zero), and far from 2^63 whatever is
        -- added (review 115 #2: `0123` or 20 digits passed here and failed INCRBY midway).
        local function is_count(stored)
          return stored == '0' or (#stored <= 18 and string.match(stored, '^[1-9]%d*$') ~= nil)
        end
        local function count_in(stored)
          if not stored then return 0 end
          if not is_count(stored) then error({err = 'ERR fusion-gateway: a counter holds something other than a count'}) end
          return tonumber(stored)
        end
        local function spent(key)
          return count_in(redis.call('GET', key))
        end

        """

    /// The holds' total, a cache of their set kept so a decision costs O(log n). `held_in`
    /// returns it less `gone` (the amounts of the gateway's own holds just released), or makes
    /// it again from the set: when `rebuild` (holds lapsed out of the set: a member written by
    /// hand and lapsing took its amount off the holds in flight, reviews 129 #2, 131 #1; lapses
    /// are rare, a replica that died before its releases), when the total is not what the
    /// scripts write (another program's `nan` refused nothing, every comparison with NaN being
    /// false; `abc` or `-5` counted as nothing held: review 128 #2), when it is missing while
    /// holds remain, or when `gone` would take it below zero. A member's amount counts only with
    /// at most 14 digits, so a sum over 10,000 members stays a count the scripts accept back
    /// (review 129 #1: a 20-digit amount made a total `%d` wrote as -2^63, made again on every
    /// request). Nil when the set is larger than any key's holds (over 10,000 members, or 1 MiB
    /// of them, read 100 at a time): a sum over a million, or over 10,000 of 20 KB, held Redis
    /// for every replica (reviews 129 #1, 131 #2).
    private static let holdTotal = """
        local function amount_of(member)
          local digits = string.match(member, ' (%d+)$')
          if digits and #digits <= 14 then return tonumber(digits) end
          return 0
        end
        local function held_in(holds, total, gone, rebuild)
          local stored = redis.call('GET', total)
          if not rebuild and (stored == '0' or (stored and #stored <= 18 and string.match(stored, '^[1-9]%d*$'))) then
            if tonumber(stored) - gone >= 0 then return tonumber(stored) - gone end
          end
          local size = redis.call('ZCARD', holds)
          if size == 0 then return 0 end
          if size > 10000 then return nil end
          local sum, bytes = 0, 0
          for first = 0, size - 1, 100 do
            for _, member in ipairs(redis.call('ZRANGE', holds, first, first + 99)) do
              bytes = bytes + #member
              if bytes > 1048576 then return nil end
              sum = sum + amount_of(member)
            end
          end
          return sum
        end
        -- What a total is stored as: '0' while holds remain (missing, it would be made again on
        -- every request: review 129 #1), nothing once none do.
        local function store_held(holds, total, held, ttl)
          if redis.call('ZCARD', holds) == 0 then
            redis.call('DEL', total)
          elseif ttl then
            redis.call('SET', total, string.format('%d', held), 'PX', ttl)
          else
            redis.call('SET', total, string.format('%d', held), 'KEEPTTL')
          end
        end

        """

    /// Ends holds: used by the settle script (its holds end as its spend lands) and the release one.
    private static let releaseHolds = holdTotal + """
        -- Ends the holds named in ARGV from `first` on (pairs: member `"<hold id> <µ$>"`, amount)
        -- and takes them off their total. One already lapsed or released changes nothing.
        -- Keys of another type (written by hand) hold no hold of ours: nothing to end there, and
        -- a total that is no string is made again from the holds left (rare: a sum over them).
        -- Never an error: a settlement's spend lands whatever the holds hold (reviews 118 #2,
        -- 120 #4); a set too large to sum leaves no total (the next hold is the store's error).
        local function release_holds(holds, total, first)
          if redis.call('TYPE', holds)['ok'] ~= 'zset' then return end
          local released = 0
          for i = first, #ARGV - 1, 2 do
            if redis.call('ZREM', holds, ARGV[i]) == 1 then released = released + (tonumber(ARGV[i + 1]) or 0) end
          end
          if released == 0 then return end
          local total_type = redis.call('TYPE', total)['ok']
          if total_type ~= 'string' and total_type ~= 'none' then redis.call('DEL', total) end
          local held = held_in(holds, total, released, false)
          if not held then
            redis.call('DEL', total)
          elseif total_type == 'none' or total_type == 'string' then
            store_held(holds, total, held, nil)
          else
            local ttl = redis.call('PTTL', holds)
            if ttl > 0 then store_held(holds, total, held, ttl) end
          end
        end

        """

    /// KEYS: request bucket, token bucket, day spend, month spend.
    /// ARGV: now (or ''), requests/minute, tokens/minute, request cost, token cost, daily budget,
    /// monthly budget (0: none), µs until the day ends, µs until the month ends.
    /// Returns `{allowed, now}` then per dimension (requests, tokens, day, month) six integers:
    /// present, limit, remaining, reset µs, exceeded, retry-after µs.
    static let admit = prelude + """
        local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
        local request_cost, token_cost = tonumber(ARGV[4]), tonumber(ARGV[5])
        local day_budget, month_budget = tonumber(ARGV[6]), tonumber(ARGV[7])
        local day_reset, month_reset = tonumber(ARGV[8]), tonumber(ARGV[9])
        local out = {1, now}
        local levels = {}
        local function rate(index, key, limit, cost)
          if limit <= 0 then
            for _ = 1, 6 do table.insert(out, 0) end
            return
          end
          local level = level_at(key, limit)
          local allowed = level >= cost
          if allowed then level = level - cost end
          local per_unit = period / limit
          local retry = 0
          if not allowed then
            retry = reported(math.ceil((cost - level) * per_unit))
            out[1] = 0
          end
          levels[index] = level
          for _, value in ipairs({1, limit, math.floor(math.max(0, level)), reported(math.ceil((limit - level) * per_unit)),
                                  allowed and 0 or 1, retry}) do
            table.insert(out, value)
          end
        end
        local function budget(key, limit, reset)
          if limit <= 0 then
            for _ = 1, 6 do table.insert(out, 0) end
            return
          end
          local used = spent(key)
          local exceeded = used >= limit
          if exceeded then out[1] = 0 end
          if reset < 0 then reset = 0 end
          for _, value in ipairs({1, limit, math.max(0, limit - used), reset, exceeded and 1 or 0, exceeded and reset or 0}) do
            table.insert(out, value)
          end
        end
        rate(1, KEYS[1], rpm, request_cost)
        rate(2, KEYS[2], tpm, token_cost)
        budget(KEYS[3], day_budget, day_reset)
        budget(KEYS[4], month_budget, month_reset)
        if out[1] == 1 then
          if levels[1] then store(KEYS[1], levels[1], rpm) end
          if levels[2] then store(KEYS[2], levels[2], tpm) end
        end
        return out
        """

    /// KEYS: request bucket, token bucket, day spend, month spend, usage hash, this settlement's
    /// marker, and with holds to end the key's holds and their total.
    /// ARGV: now (or ''), requests/minute, tokens/minute (0: none), extra requests, token delta,
    /// spend µ$, seconds until the day's counter expires, seconds until the month's, then the
    /// usage to add: requests, prompt tokens, completion tokens; then the marker's lifetime (s);
    /// then the holds to end, as the release script takes them (member, amount), pair by pair.
    /// Applied once: a settlement sent again (its reply lost to a timeout) finds its marker and
    /// returns 0 without counting anything twice.
    /// Its holds end in the same step as the spend lands: a settlement Redis ran whose reply
    /// never came (a replica stopped while Redis stalled) leaves no hold behind it to keep the
    /// budget held for the holds' lifetime (review 114 #3).
    /// The spend counters are read first: one that holds something else fails the script before
    /// it writes anything (Redis does not undo a script's writes before its error), and the
    /// policy decides, as admission does. The usage counts are the key's report, read by no
    /// decision: one that holds something else starts again from zero, so the spend still lands
    /// (review 115 #1: a garbage usage field dropped every settlement, spend and all).
    static let settle = prelude + releaseHolds + """
        spent(KEYS[3])
        spent(KEYS[4])
        local usage_type = redis.call('TYPE', KEYS[5])['ok']
        if usage_type ~= 'none' and usage_type ~= 'hash' then redis.call('DEL', KEYS[5]) end
        -- A bucket of another type (written by hand) would fail the script after its marker,
        -- the spend lost (review 120 #4): dropped, it is a full bucket again.
        for _, bucket in ipairs({KEYS[1], KEYS[2]}) do
          local bucket_type = redis.call('TYPE', bucket)['ok']
          if bucket_type ~= 'none' and bucket_type ~= 'string' then redis.call('DEL', bucket) end
        end
        local applied = 0
        -- The marker is the first write: Redis refuses it while full (`OOM`) before anything else
        -- changed, so the holds stay while the spend is not counted.
        if redis.call('SET', KEYS[6], '1', 'NX', 'EX', ARGV[12]) then
          local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
          local extra, delta, spend = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
          if rpm > 0 and extra ~= 0 then store(KEYS[1], math.max(deepest(rpm), level_at(KEYS[1], rpm) - extra), rpm) end
          if tpm > 0 and delta ~= 0 then store(KEYS[2], math.max(deepest(tpm), level_at(KEYS[2], tpm) - delta), tpm) end
          if spend > 0 then
            redis.call('INCRBY', KEYS[3], spend)
            redis.call('EXPIRE', KEYS[3], ARGV[7])
            redis.call('INCRBY', KEYS[4], spend)
            redis.call('EXPIRE', KEYS[4], ARGV[8])
          end
          for _, field in ipairs({'requests', 'prompt_tokens', 'completion_tokens', 'cost_micros'}) do
            local stored = redis.call('HGET', KEYS[5], field)
            if stored and not is_count(stored) then redis.call('HSET', KEYS[5], field, '0') end
          end
          redis.call('HINCRBY', KEYS[5], 'requests', ARGV[9])
          redis.call('HINCRBY', KEYS[5], 'prompt_tokens', ARGV[10])
          redis.call('HINCRBY', KEYS[5], 'completion_tokens', ARGV[11])
          redis.call('HINCRBY', KEYS[5], 'cost_micros', spend)
          applied = 1
        end
        -- Last, once the spend is in (or was, by this settlement sent before): nothing it does
        -- can lose the spend (review 118 #2: a hold total of another type failed the script
        -- between the marker and the spend).
        if #KEYS >= 8 then release_holds(KEYS[7], KEYS[8], 13) end
        return applied
        """

    /// KEYS: day spend, month spend, the key's holds (a sorted set: members `"<hold id> <µ$>"`,
    /// scored by when each lapses), their total (an integer, kept with the set so a decision
    /// costs O(log n), not a sum over every request in flight).
    /// ARGV: now (or ''), daily budget, monthly budget (0: none), the amount to hold, the hold's
    /// id, its lifetime µs, µs until the day ends, µs until the month ends.
    /// Lapsed holds leave the set and the total first. Returns seven integers: allowed, the
    /// amount held (0 when refused), then for a refusal the budget (1 day, 2 month), its limit,
    /// its spend, the holds in flight, µs until it resets; for an allowance 0, 0, 0, the holds
    /// before this one, 0.
    static let hold = prelude + holdTotal + """
        local daily, monthly = tonumber(ARGV[2]), tonumber(ARGV[3])
        local amount, lifetime = tonumber(ARGV[4]), tonumber(ARGV[6])
        local lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
        -- A hold lapsing later than any this gateway takes (written by hand) is no hold of ours:
        -- kept, it would keep the set from ever emptying (review 114 #4).
        local latest = '(' .. string.format('%d', now + lifetime)
        lapsed = lapsed + redis.call('ZREMRANGEBYSCORE', KEYS[3], latest, '+inf')
        local held = held_in(KEYS[3], KEYS[4], 0, lapsed > 0)
        if not held then error({err = 'ERR fusion-gateway: a key holds more holds than any requests in flight'}) end
        if redis.call('ZCARD', KEYS[3]) == 0 then held = 0 end
        local refusals = {}
        local function check(kind, key, limit, reset)
          if limit <= 0 then return end
          local used = spent(key)
          if used + held + amount > limit then
            if reset < 0 then reset = 0 end
            table.insert(refusals, {0, 0, kind, limit, used, held, reset})
          end
        end
        check(2, KEYS[2], monthly, tonumber(ARGV[8]))
        check(1, KEYS[1], daily, tonumber(ARGV[7]))
        -- Reported: one the request would not fit with nothing in flight, else the first (`RateLimitMath.hold`).
        local refused = refusals[1]
        for _, refusal in ipairs(refusals) do
          if refusal[5] + amount > refusal[4] then refused = refusal break end
        end
        local ttl = math.ceil(lifetime / 1000) + 1000
        if refused then
          store_held(KEYS[3], KEYS[4], held, ttl)
          return refused
        end
        redis.call('ZADD', KEYS[3], now + lifetime, ARGV[5] .. ' ' .. ARGV[4])
        redis.call('PEXPIRE', KEYS[3], ttl)
        redis.call('SET', KEYS[4], string.format('%d', held + amount), 'PX', ttl)
        return {1, amount, 0, 0, 0, held, 0}
        """

    /// KEYS: the key's holds, their total. ARGV: the hold (`"<hold id> <µ$>"`), its amount.
    /// A hold already lapsed (or released) changes nothing.
    static let release = releaseHolds + """
        release_holds(KEYS[1], KEYS[2], 1)
        return 1
        """
}
