-- A checker of Nomad's JSON job format (what `nomad job run -json` and the
-- HTTP API take: { "Job": {...} }): every field a known one of its
-- structure, of its type (the Go types of Nomad's api/ package: jobs.go,
-- tasks.go, services.go, resources.go), plus the rules of Nomad's
-- RestartPolicy.Validate and ReschedulePolicy.Validate. The fields listed
-- are those pm export may write and their neighbours; a field outside
-- them is reported (the user-side check is `nomad job validate`).
-- check(job) -> a list of "path: what is wrong" (empty when it fits).
local M = {}

local S, I, B, D = "string", "int", "bool", "duration" -- (durations: integers, ns)
local MAP_S = { map = "string" }
local LIST_S = { list = "string" }

local CheckRestart = { Limit = I, Grace = D, IgnoreWarnings = B }
local ServiceCheck = { Name = S, Type = S, Command = S, Args = LIST_S, Path = S, Protocol = S, PortLabel = S,
  Expose = B, AddressMode = S, Advertise = S, Interval = D, Timeout = D, InitialStatus = S, Notes = S,
  TLSServerName = S, TLSSkipVerify = B, Method = S, CheckRestart = CheckRestart, GRPCService = S,
  GRPCUseTLS = B, TaskName = S, SuccessBeforePassing = I, FailuresBeforeCritical = I,
  FailuresBeforeWarning = I, Body = S, OnUpdate = S }
local Service = { Name = S, Tags = LIST_S, CanaryTags = LIST_S, EnableTagOverride = B, PortLabel = S,
  AddressMode = S, Address = S, Checks = { list = ServiceCheck }, CheckRestart = CheckRestart, Meta = MAP_S,
  CanaryMeta = MAP_S, TaggedAddresses = MAP_S, TaskName = S, OnUpdate = S, Provider = S, Cluster = S, Kind = S }
local Port = { Label = S, Value = I, To = I, HostNetwork = S, IgnoreCollision = B }
local NetworkResource = { Mode = S, Device = S, CIDR = S, IP = S, ReservedPorts = { list = Port },
  DynamicPorts = { list = Port }, Hostname = S, MBits = I }
local Resources = { CPU = I, Cores = I, MemoryMB = I, MemoryMaxMB = I, DiskMB = I,
  Networks = { list = NetworkResource }, SecretsMB = I, IOPS = I }
local RestartPolicy = { Interval = D, Attempts = I, Delay = D, Mode = S, RenderTemplates = B }
local ReschedulePolicy = { Attempts = I, Interval = D, Delay = D, DelayFunction = S, MaxDelay = D, Unlimited = B }
local Task = { Name = S, Driver = S, User = S, Config = { map = "any" }, Env = MAP_S,
  Services = { list = Service }, Resources = Resources, RestartPolicy = RestartPolicy, Meta = MAP_S,
  KillTimeout = D, Leader = B, ShutdownDelay = D, KillSignal = S, Kind = S }
local TaskGroup = { Name = S, Count = I, Tasks = { list = Task }, RestartPolicy = RestartPolicy,
  ReschedulePolicy = ReschedulePolicy, Networks = { list = NetworkResource }, Meta = MAP_S,
  Services = { list = Service }, ShutdownDelay = D, MaxRunDuration = D }
local Job = { Region = S, Namespace = S, ID = S, Name = S, Type = S, Priority = I, Datacenters = LIST_S,
  TaskGroups = { list = TaskGroup }, Meta = MAP_S, AllAtOnce = B, NodePool = S }
M.ROOT = { Job = Job }

local function is_int(v) return type(v) == "number" and v % 1 == 0 end

local function walk(v, spec, path, errs)
  local function bad(what) errs[#errs + 1] = path .. ": " .. what end
  if spec == S then
    if type(v) ~= "string" then bad("a string expected, got " .. type(v)) end
  elseif spec == I or spec == D then
    if not is_int(v) then bad("an integer expected, got " .. type(v)) end
    if spec == D and is_int(v) and v < 0 then bad("a negative duration") end
  elseif spec == B then
    if type(v) ~= "boolean" then bad("a boolean expected, got " .. type(v)) end
  elseif spec == "any" then
    return
  elseif spec.list then
    if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then return bad("a list expected") end
    for i, e in ipairs(v) do walk(e, spec.list, path .. "[" .. i .. "]", errs) end
  elseif spec.map then
    if type(v) ~= "table" or v[1] ~= nil then return bad("an object expected") end
    for k, e in pairs(v) do walk(e, spec.map, path .. "." .. tostring(k), errs) end
  else
    if type(v) ~= "table" or v[1] ~= nil then return bad("an object expected") end
    for k, e in pairs(v) do
      if spec[k] == nil then bad("unknown field " .. tostring(k)) else walk(e, spec[k], path .. "." .. k, errs) end
    end
  end
end

local SECOND = 1000000000

-- Nomad's Validate of a group's policies (nomad/structs/structs.go)
local function rules(g, path, errs)
  local r = g.RestartPolicy
  if type(r) == "table" and is_int(r.Attempts) and is_int(r.Interval) then
    if r.Mode ~= "fail" and r.Mode ~= "delay" then errs[#errs + 1] = path .. ": restart mode " .. tostring(r.Mode) end
    if r.Attempts == 0 and r.Mode ~= "fail" then errs[#errs + 1] = path .. ": 0 attempts is ambiguous" end
    if r.Interval < 5 * SECOND then errs[#errs + 1] = path .. ": restart interval under 5 s" end
    if r.Attempts * (r.Delay or 0) > r.Interval then
      errs[#errs + 1] = path .. ": attempts x delay exceeds the restart interval"
    end
  end
  local s = g.ReschedulePolicy
  if type(s) == "table" and ((s.Attempts or 0) > 0 or s.Unlimited) then
    if (s.Attempts or 0) > 0 and s.Unlimited then errs[#errs + 1] = path .. ": attempts and unlimited" end
    if (s.Delay or 0) < 5 * SECOND then errs[#errs + 1] = path .. ": reschedule delay under 5 s" end
    local f = s.DelayFunction
    if f ~= "constant" and f ~= "exponential" and f ~= "fibonacci" then
      errs[#errs + 1] = path .. ": delay function " .. tostring(f)
    end
    if f ~= "constant" and ((s.MaxDelay or 0) < 5 * SECOND or (s.MaxDelay or 0) < (s.Delay or 0)) then
      errs[#errs + 1] = path .. ": max delay under 5 s or under the delay"
    end
  end
end

function M.check(job)
  local errs = {}
  walk(job, M.ROOT, "", errs)
  local J = type(job) == "table" and job.Job
  if type(J) ~= "table" then return { "no Job" } end
  if type(J.ID) ~= "string" or J.ID == "" then errs[#errs + 1] = "Job.ID: required" end
  if J.Type ~= "service" and J.Type ~= "batch" and J.Type ~= "system" and J.Type ~= "sysbatch" then
    errs[#errs + 1] = "Job.Type: " .. tostring(J.Type)
  end
  local names = {}
  for i, g in ipairs(type(J.TaskGroups) == "table" and J.TaskGroups or {}) do
    local path = "Job.TaskGroups[" .. i .. "]"
    if names[g.Name] then errs[#errs + 1] = path .. ": two groups named " .. tostring(g.Name) end
    names[g.Name] = true
    rules(g, path, errs)
    -- a service's port label is one of the group's ports
    local labels = {}
    for _, n in ipairs(g.Networks or {}) do
      for _, p in ipairs(n.ReservedPorts or {}) do labels[p.Label] = true end
      for _, p in ipairs(n.DynamicPorts or {}) do labels[p.Label] = true end
    end
    for _, t in ipairs(g.Tasks or {}) do
      if type(t.Driver) ~= "string" or t.Driver == "" then errs[#errs + 1] = path .. ": a task without a driver" end
      for _, s in ipairs(t.Services or {}) do
        if s.PortLabel and not labels[s.PortLabel] then errs[#errs + 1] = path .. ": no port " .. s.PortLabel end
        for _, c in ipairs(s.Checks or {}) do
          if c.PortLabel and not labels[c.PortLabel] then errs[#errs + 1] = path .. ": no port " .. c.PortLabel end
          if c.Type == "script" and (c.Command or "") == "" then
            errs[#errs + 1] = path .. ": a script check without a command"
          end
        end
      end
    end
  end
  return errs
end

return M
