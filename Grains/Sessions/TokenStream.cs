using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// One generation's tokens as the session's compute makes them, each added to the transcript as it is handed out.
/// Normally runs at the compute worker (<see cref="ComputeWorker.Generate"/>), which feeds every sampled token back
/// itself, so no step waits for the grain or the caller; a run ends where a segment of the λ index seals, so that
/// the context budget can move it to a shard before the next. A session whose context shards hold part of its cache
/// goes a step at a time through <see cref="SessionRuntime.Step"/>, which queries them, with the next step computing
/// while the last token travels.
/// </summary>
internal sealed class TokenStream(SessionRuntime runtime, SessionCompute compute, Transcript tokens, int count)
{
    private DecodeRun? run;
    private int runLeft;
    private Task<int>? ahead;
    private RngState beforeAhead;
    private int left = count;

    /// <summary>The generator as it stood after the last token handed out: what a checkpoint of the transcript saves.</summary>
    public RngState Generator { get; private set; } = compute.Sampler.State;

    public async ValueTask<int> Next()
    {
        if (left <= 0) throw new InvalidOperationException("the generation made the tokens it was asked for");
        // A step already under way goes first, even if a lost shard has since taken the session's external context.
        int next = ahead is not null || (compute.Inference.HasExternalContext && run is null) ? await NextStep() : await NextOfRun();
        tokens.Add(next);
        if (--left > 0 && run is null && compute.Inference.HasExternalContext)
        {
            beforeAhead = compute.Sampler.State;
            ahead = runtime.Step(compute, tokens, sample: true);
        }
        return next;
    }

    private async ValueTask<int> NextStep()
    {
        int next = await (ahead ?? runtime.Step(compute, tokens, sample: true));
        ahead = null;
        Generator = compute.Sampler.State;
        return next;
    }

    private async ValueTask<int> NextOfRun()
    {
        try
        {
            if (run is null || runLeft == 0)
            {
                if (run is { } spent)
                {
                    run = null;
                    if (!await spent.Stop()) throw new InvalidOperationException("the compute worker's run failed after its last token");
                }
                await runtime.BeforeRun(compute, tokens);
                if (compute.Inference.HasExternalContext) return await NextStep();   // the budget just moved segments out
                runLeft = Math.Min(left, runtime.RunHeadroom(compute));
                run = runtime.WorkerFor(compute).Generate(compute.Inference, tokens.From(compute.Inference.Length), compute.Sampler, runLeft);
            }
            int next = await run.Value.Next();
            runLeft--;
            Generator = run.Value.Generator;
            return next;
        }
        catch
        {
            run = null;
            _ = runtime.Release();   // the cache is in no known state: rebuilt from the persisted tokens on next use
            throw;
        }
    }

    /// <summary>
    /// Ends the generation. Tokens computed but never handed out are not kept: with the generator as it stood after the
    /// last token handed out (and a run's cache cut back to it), the next generation draws them again.
    /// </summary>
    public async Task Stop()
    {
        if (run is { } r)
        {
            run = null;
            if (!await r.Stop()) _ = runtime.Release();   // it failed after the last token taken: rebuilt from the tokens on next use
        }
        if (ahead is null) return;
        try
        {
            await ahead;
            compute.Sampler.State = beforeAhead;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The step's failure has already dropped the live cache; the tokens stand as they are.
        }
    }
}
