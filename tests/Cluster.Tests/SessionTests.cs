using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

[Collection(nameof(ClusterCollection))]
public sealed class SessionTests(ClusterFixture fixture)
{
    private static SessionSpec Spec(string model = TestWorld.Tiny, ulong seed = 1, string? domain = null, double temperature = 0.9) =>
        new(model, domain, new SamplingSettings(temperature, TopK: 40, TopP: 0.95, Seed: seed));

    private static string NewId() => $"t-{Guid.NewGuid():N}";

    private async Task<(string Id, int[] Ids, string Text)> Run(SessionSpec spec, string prompt, int maxTokens, string? id = null)
    {
        id ??= NewId();
        await fixture.Sessions.Open(id, spec);
        await fixture.Sessions.Append(id, PromptInput.FromText(prompt));
        var tokens = new List<CompletionChunk>();
        await foreach (var t in fixture.Sessions.Generate(id, maxTokens)) tokens.Add(t);
        return (id, tokens.Select(t => t.Id).ToArray(), string.Concat(tokens.Select(t => t.Text)));
    }

    [Fact]
    public async Task Same_seed_and_request_give_the_same_tokens_and_another_seed_does_not()
    {
        var a = await Run(Spec(seed: 5), "the same request", 24);
        var b = await Run(Spec(seed: 5), "the same request", 24);
        var c = await Run(Spec(seed: 6), "the same request", 24);
        Assert.Equal(24, a.Ids.Length);
        Assert.Equal(a.Ids, b.Ids);
        Assert.NotEqual(a.Ids, c.Ids);
        Assert.Equal(ByteTokenizer.Instance.Decode(a.Ids), a.Text);
    }

    [Fact]
    public async Task Cluster_generation_matches_the_bare_engine()
    {
        var spec = Spec(seed: 9);
        var (_, ids, _) = await Run(spec, "engine parity", 16);

        var model = TauModel.Load(Path.Combine(fixture.World.Options.ModelsRoot!, TestWorld.Tiny));
        var session = new InferenceSession(model);
        var sampler = new Sampler(model.Config.VocabSize, new SamplingOptions(Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: 9));   // Spec(seed: 9), by hand
        var logits = session.Append(ByteTokenizer.Instance.Encode("engine parity").ToArray());
        var expected = new List<int>();
        for (int i = 0; i < 16; i++)
        {
            expected.Add(sampler.Sample(logits));
            logits = session.Append(expected[^1]);
        }
        Assert.Equal(expected, ids);
    }

    /// <summary>
    /// The compute worker runs a generation's steps ahead of the grain, so a stop sequence ends a reply after the worker
    /// has computed tokens past it. Those are undone: the transcript ends at the stop, and the next generation draws
    /// exactly what one uninterrupted generation of the same seed draws from there.
    /// </summary>
    [Fact]
    public async Task A_reply_ended_by_a_stop_sequence_leaves_nothing_of_what_was_computed_past_it()
    {
        var spec = Spec(seed: 13);
        var (_, whole, text) = await Run(spec, "stop and go on", 60);
        string stop = text.Substring(6, 2);
        int stopEnd = text.IndexOf(stop, StringComparison.Ordinal) + stop.Length;   // byte tokens: one per character

        var id = NewId();
        await fixture.Sessions.Open(id, spec);
        int prompt = (await fixture.Sessions.Append(id, PromptInput.FromText("stop and go on"))).Length;
        await foreach (var _ in fixture.Sessions.Generate(id, 60, stop: [stop])) { }
        var session = fixture.Sessions.Session(id);
        Assert.Equal(prompt + stopEnd, (await session.GetInfo()).Length);

        await foreach (var _ in fixture.Sessions.Generate(id, 60 - stopEnd)) { }
        Assert.Equal(whole, (await session.GetTokens())[prompt..]);
    }

    [Fact]
    public async Task Sessions_spread_over_the_silos()
    {
        var silos = new HashSet<string>();
        for (int i = 0; i < 12; i++) silos.Add((await fixture.Sessions.Open(NewId(), Spec())).Silo);
        Assert.True(silos.Count >= 2, $"12 sessions all on {string.Join(", ", silos)}");
    }

    [Fact]
    public async Task A_follow_up_turn_prefills_only_its_new_tokens()
    {
        var id = NewId();
        await fixture.Sessions.Open(id, Spec());
        var first = await fixture.Sessions.Append(id, PromptInput.FromText("first turn"));
        Assert.Equal(10, first.PrefilledTokens);
        await foreach (var _ in fixture.Sessions.Generate(id, 6)) { }
        var second = await fixture.Sessions.Append(id, PromptInput.FromText("next"));
        Assert.Equal(10 + 6 + 4, second.Length);
        Assert.Equal(4 + 1, second.PrefilledTokens);   // the new turn, plus the last generated token not yet run
        Assert.Equal(0, second.RebuiltTokens);
        Assert.True(second.CacheBytes > 0 && second.CacheBytes < second.BaselineCacheBytes);
    }

    [Fact]
    public async Task A_retried_append_is_applied_once()
    {
        var id = NewId();
        await fixture.Sessions.Open(id, Spec());
        var prompt = PromptInput.FromIds([1, 2, 3], expectedLength: 0);
        await fixture.Sessions.Session(id).Append(prompt);
        var again = await fixture.Sessions.Session(id).Append(prompt);   // as if the first reply had been lost
        Assert.Equal(3, again.Length);
        await Assert.ThrowsAsync<SessionConflictException>(() => fixture.Sessions.Session(id).Append(PromptInput.FromIds([4], expectedLength: 1)));
    }

    [Fact]
    public async Task Fork_continues_from_the_parent_cache_and_both_generate_alike()
    {
        var parent = NewId();
        var child = NewId();
        await Run(Spec(seed: 3), "fork me", 8, parent);
        var parentInfo = await fixture.Sessions.Info(parent);
        var forked = await fixture.Sessions.Session(parent).Fork(child);
        Assert.Equal(parentInfo.Length, forked.Length);
        Assert.Equal(parentInfo.Silo, forked.Silo);                  // placed beside its parent
        Assert.Equal(1, forked.RebuiltTokens);                       // only the last token is run again, not the prefix

        var fromParent = new List<int>();
        await foreach (var t in fixture.Sessions.Generate(parent, 10)) fromParent.Add(t.Id);
        var fromChild = new List<int>();
        await foreach (var t in fixture.Sessions.Generate(child, 10)) fromChild.Add(t.Id);
        Assert.Equal(fromParent, fromChild);                         // same cache, same generator state
        Assert.Equal(await fixture.Sessions.Session(parent).GetTokens(), await fixture.Sessions.Session(child).GetTokens());
        await Assert.ThrowsAsync<SessionConflictException>(() => fixture.Sessions.Session(parent).Fork(child));
    }

    [Fact]
    public async Task Reset_forgets_tokens_and_restarts_the_generator_and_delete_removes_the_session()
    {
        var (id, ids, _) = await Run(Spec(seed: 4), "reset me", 6);
        var reset = await fixture.Sessions.Session(id).Reset();
        Assert.Equal(0, reset.Length);
        await fixture.Sessions.Append(id, PromptInput.FromText("reset me"));
        var again = new List<int>();
        await foreach (var t in fixture.Sessions.Generate(id, 6)) again.Add(t.Id);
        Assert.Equal(ids, again);

        await fixture.Sessions.Session(id).Delete();
        var info = await fixture.Sessions.Info(id);
        Assert.False(info.Exists);
        await Assert.ThrowsAsync<UnknownNameException>(() => fixture.Sessions.Session(id).Append(PromptInput.FromText("gone")));
    }

    [Fact]
    public async Task A_cancelled_generation_stops_within_one_chunk_of_the_cancel_and_nothing_runs_on_after()
    {
        var id = NewId();
        var spec = Spec();
        await fixture.Sessions.Open(id, spec);
        int prompt = (await fixture.Sessions.Append(id, PromptInput.FromText("cancel"))).Length;
        var session = fixture.Sessions.Session(id);
        const int cancelAt = 5;
        using var cts = new CancellationTokenSource();
        var received = new List<int>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var t in fixture.Sessions.Generate(id, 3000, cancellation: cts.Token))
            {
                received.Add(t.Id);
                if (received.Count == cancelAt) cts.Cancel();   // the point of cancel: no token is being asked for
            }
        });

        // Open with the session's own spec changes nothing and waits for the session's turn: it answers once the
        // generation has let go of the session, so what the session holds now is all the generation made.
        var ended = await session.Open(spec);
        var tokens = await session.GetTokens();
        // Every token the consumer was handed is in the transcript, and at most a chunk more: what the silo had sent
        // when it stopped asking (no more than the compute worker's run window ahead of it, and the one in flight).
        // (The consumer may be handed a token after its cancel only if the silo had sent it already.)
        Assert.True(received.Count >= cancelAt, $"{received.Count} tokens received");
        Assert.InRange(ended.Length, prompt + received.Count, prompt + cancelAt + ComputeWorker.RunWindow + 1);
        Assert.Equal(ended.Length, tokens.Length);
        Assert.Equal(received, tokens[prompt..(prompt + received.Count)]);

        await session.Open(spec);                              // the turnstile again: had anything run on, it would show now
        Assert.Equal(tokens, await session.GetTokens());
        Assert.Equal(ended.Length, (await session.GetInfo()).Length);
    }

    [Fact]
    public async Task Concurrent_calls_on_one_session_are_served_one_at_a_time()
    {
        var id = NewId();
        await fixture.Sessions.Open(id, Spec());
        await fixture.Sessions.Append(id, PromptInput.FromIds([1, 2, 3]));
        var session = fixture.Sessions.Session(id);
        await using var generation = session.Complete(new CompletionRequest(null, null, 30, RequestId: NewId())).GetAsyncEnumerator();
        Assert.True(await generation.MoveNextAsync());                        // the generation holds the session now
        var append = session.Append(PromptInput.FromIds([255, 255, 255]));   // arrives mid-generation: must wait its turn
        int received = 1;
        while (await generation.MoveNextAsync()) received++;
        await append;
        var tokens = await session.GetTokens();
        Assert.Equal(30, received);
        Assert.Equal(36, tokens.Length);
        Assert.Equal([255, 255, 255], tokens[^3..]);                        // after the whole generation, not inside it
    }

    [Fact]
    public async Task A_resent_request_stops_where_the_first_one_stopped()
    {
        var id = NewId();
        var greedy = Spec(temperature: 0);
        var (_, ids, text) = await Run(greedy, "stop here", 12);
        string stop = text.Substring(3, 2);
        await fixture.Sessions.Open(id, greedy);
        await fixture.Sessions.Append(id, PromptInput.FromText("stop here"));
        var session = fixture.Sessions.Session(id);
        var request = new CompletionRequest(null, null, 12, Stop: [stop], RequestId: NewId());
        var first = new List<CompletionChunk>();
        await foreach (var t in session.Complete(request)) first.Add(t);
        int length = (await session.GetInfo()).Length;
        Assert.True(length < 9 + 12, "the stop sequence should have ended the generation early");

        var again = new List<CompletionChunk>();
        await foreach (var t in session.Complete(request)) again.Add(t);   // as the client re-sends after a lost stream
        Assert.Equal(first, again);
        Assert.Equal(length, (await session.GetInfo()).Length);
    }

    [Fact]
    public async Task A_refused_continuation_leaves_the_session_as_it_was()
    {
        var id = NewId();
        await fixture.Sessions.Open(id, Spec());
        await fixture.Sessions.Append(id, PromptInput.FromText("keep this conversation"));
        var before = await fixture.Sessions.Session(id).GetTokens();
        async Task Complete(CompletionRequest request)
        {
            await foreach (var _ in fixture.Sessions.Session(id).Complete(request)) { }
        }
        await Assert.ThrowsAsync<ContextLengthExceededException>(() => Complete(new CompletionRequest(Spec(), PromptInput.FromIds(new int[5000]), 1, PromptPlacement.Whole)));
        // A prompt that fits, but not with the reply asked for: refused before the session forgets or prefills anything.
        var e = await Assert.ThrowsAsync<ContextLengthExceededException>(() => Complete(new CompletionRequest(Spec(), PromptInput.FromText("another conversation"), 4080, PromptPlacement.Whole)));
        Assert.Contains("max_tokens (4080)", e.Message);
        await Assert.ThrowsAsync<ContextLengthExceededException>(() => Complete(new CompletionRequest(null, PromptInput.FromText(" and more"), 4070)));
        await Assert.ThrowsAsync<SessionConflictException>(() => Complete(new CompletionRequest(Spec(model: TestWorld.TinyCausal), PromptInput.FromText("x"), 1)));
        await Assert.ThrowsAsync<InvalidOptionsException>(() => Complete(new CompletionRequest(null, PromptInput.FromText("x"), 0)));
        Assert.Equal(before, await fixture.Sessions.Session(id).GetTokens());
    }

    [Fact]
    public async Task Sessions_on_the_same_and_other_silos_complete_whole_generations_while_one_session_is_mid_generation()
    {
        const string prompt = "held open";
        const int length = 20;
        var spec = Spec(seed: 7);
        var held = NewId();
        await fixture.Sessions.Open(held, spec);
        int start = (await fixture.Sessions.Append(held, PromptInput.FromText(prompt))).Length;
        string heldSilo = (await fixture.Sessions.Info(held)).Silo;

        // Others: a fork of the held session (placed beside it, on its silo), and a session on each other silo.
        var beside = NewId();
        Assert.Equal(heldSilo, (await fixture.Sessions.Session(held).Fork(beside)).Silo);
        var others = new Dictionary<string, string>();   // silo -> session
        int silos = fixture.Cluster.Silos.Count;
        for (int attempt = 0; attempt < 60 && others.Count < silos - 1; attempt++)
        {
            var id = NewId();
            var info = await fixture.Sessions.Open(id, Spec(seed: (ulong)attempt));
            if (info.Silo != heldSilo) others.TryAdd(info.Silo, id);
        }
        Assert.Equal(silos - 1, others.Count);   // clients' sessions are placed at random: 60 draws reach every silo
        foreach (var id in others.Values) await fixture.Sessions.Append(id, PromptInput.FromText("meanwhile"));

        // The held session's generation takes the session's turn and makes its first token, then waits for its reader.
        await using var generation = fixture.Sessions.Session(held).Complete(new CompletionRequest(null, null, length, RequestId: NewId())).GetAsyncEnumerator();
        Assert.True(await generation.MoveNextAsync());
        var heldTokens = new List<int> { generation.Current.Id };

        async Task<(string Silo, int Count)> Whole(string id)
        {
            int count = 0;
            await foreach (var _ in fixture.Sessions.Generate(id, length)) count++;
            return ((await fixture.Sessions.Info(id)).Silo, count);
        }
        // Were sessions served one after another, these would wait for the held one, which waits for this: a deadlock,
        // reported as a failure after a bound far past what the generations take.
        var meanwhile = await Task.WhenAll(others.Values.Append(beside).Select(Whole)).WaitAsync(TimeSpan.FromMinutes(2));
        Assert.All(meanwhile, m => Assert.Equal(length, m.Count));
        Assert.Equal(fixture.Cluster.Silos.Select(s => s.SiloAddress.ToString()).Order(), meanwhile.Select(m => m.Silo).Order());

        // Still mid-generation: its reader has one token, the silo has made at most the one after it.
        Assert.InRange((await fixture.Sessions.Info(held)).Length, start + 1, start + 2);
        while (await generation.MoveNextAsync()) heldTokens.Add(generation.Current.Id);
        Assert.Equal(length, heldTokens.Count);
        Assert.Equal((await Run(spec, prompt, length)).Ids, heldTokens);   // the same request, alone
    }

    [Fact]
    public async Task A_diverging_continuation_keeps_the_cache_of_what_still_agrees()
    {
        var id = NewId();
        await fixture.Sessions.Open(id, Spec(temperature: 0));
        string reply = "";
        PromptUsage? first = null;
        await foreach (var chunk in fixture.Sessions.Complete(id, new(null, PromptInput.FromText("User: hello there\nAssistant:"), 10, PromptPlacement.Whole)))
        {
            first ??= chunk.Prompt;
            reply += chunk.Text;
        }
        Assert.Equal(0, first!.CachedTokens);

        // The client shows only part of the reply (as a stop sequence would cut it) and continues from there.
        string shown = reply[..4];
        string next = "User: hello there\nAssistant:" + shown + "\nUser: and then?\nAssistant:";
        var tokens = new List<int>();
        PromptUsage? second = null;
        await foreach (var chunk in fixture.Sessions.Complete(id, new(null, PromptInput.FromText(next), 3, PromptPlacement.Whole)))
        {
            second ??= chunk.Prompt;
            tokens.Add(chunk.Id);
        }
        int keptPrefix = "User: hello there\nAssistant:".Length + shown.Length;   // the bytes tokenizer: one token per byte
        Assert.Equal(keptPrefix, second!.CachedTokens);
        Assert.Equal(next.Length, second.Tokens);
        Assert.Equal(next.Length - keptPrefix, second.PrefilledTokens);
        Assert.Equal(next, ByteTokenizer.Instance.Decode((await fixture.Sessions.Session(id).GetTokens())[..next.Length]));
    }
    [Fact]
    public async Task A_logit_bias_is_stored_with_the_session_and_compares_by_value()
    {
        var id = NewId();
        var sampling = Spec().Sampling with { LogitBias = new LogitBias([new(5, -100f), new(2, 3.5f)]) };
        await fixture.Sessions.Open(id, Spec() with { Sampling = sampling });
        await fixture.Cluster.DeactivateAsync(fixture.Sessions.Session(id));
        var stored = (await fixture.Sessions.Info(id)).Sampling!;   // read back from storage, across the wire
        Assert.Equal(sampling, stored);
        Assert.Equal([2, 5], stored.LogitBias!.Tokens);
        Assert.Equal([3.5f, -100f], stored.LogitBias.Biases);
        Assert.NotEqual(sampling, sampling with { LogitBias = new LogitBias([new(5, -99f), new(2, 3.5f)]) });
    }

    [Fact]
    public async Task A_resent_request_with_logprobs_replays_the_scores_it_drew_and_the_prompts()
    {
        var id = NewId();
        var request = new CompletionRequest(Spec(seed: 9), PromptInput.FromText("scored once"), 10, Logprobs: 4, ScorePrompt: true, RequestId: NewId());
        static string Scores(TokenLogprob? s) => s is null ? "none" : $"{s.Token} {s.Logprob:R} {string.Join(',', s.TopTokens)} {string.Join(',', s.TopLogprobs)}";
        async Task<List<CompletionChunk>> Run()
        {
            var chunks = new List<CompletionChunk>();
            await foreach (var chunk in fixture.Sessions.Session(id).Complete(request)) chunks.Add(chunk);
            return chunks;
        }
        var first = await Run();
        // Drawn live the first time; the second time the session replays them, scored again on a copy of its cache, and
        // again after it deactivates, from its persisted tokens.
        var again = await Run();
        await fixture.Cluster.DeactivateAsync(fixture.Sessions.Session(id));
        var restored = await Run();
        foreach (var replay in new[] { again, restored })
        {
            Assert.Equal(first.Select(c => Scores(c.Logprob)), replay.Select(c => Scores(c.Logprob)));
            Assert.Equal(first[0].PromptLogprobs!.Select(Scores), replay[0].PromptLogprobs!.Select(Scores));
        }
        Assert.Equal(10, first.Count(c => c.Logprob is { Logprob: <= 0, TopTokens.Length: 4 }));
        var prompt = first[0].PromptLogprobs!;
        Assert.Equal("scored once".Length, prompt.Length);
        Assert.Equal(ByteTokenizer.Instance.Encode("scored once"), prompt.Select(s => s.Token));
        Assert.Null(prompt[0].Logprob);
        Assert.All(prompt[1..], s => Assert.True(s.Logprob <= 0));
        Assert.All(first.Skip(1), c => Assert.Null(c.PromptLogprobs));
    }

    [Fact]
    public async Task A_resent_completion_with_a_prompt_resumes_and_does_not_append_its_prompt_again()
    {
        var id = NewId();
        var request = new CompletionRequest(Spec(seed: 4), PromptInput.FromText("only once"), 8, RequestId: NewId());
        var first = new List<CompletionChunk>();
        await foreach (var chunk in fixture.Sessions.Session(id).Complete(request)) first.Add(chunk);
        var again = new List<CompletionChunk>();
        await foreach (var chunk in fixture.Sessions.Session(id).Complete(request)) again.Add(chunk);   // its reply was lost, say
        Assert.Equal(first.Select(c => (c.Position, c.Id, c.Text, c.Finish, c.Prompt)), again.Select(c => (c.Position, c.Id, c.Text, c.Finish, c.Prompt)));
        Assert.Equal("only once".Length + 8, (await fixture.Sessions.Info(id)).Length);
        Assert.Equal(new PromptUsage("only once".Length, 0, "only once".Length), first[0].Prompt);
        Assert.Equal(FinishReason.Length, first[^1].Finish);
        Assert.Equal("only once".Length + 8, first[^1].Session!.Length);

        var another = new List<CompletionChunk>();   // a new request id is a new request: its prompt goes in after the reply
        await foreach (var chunk in fixture.Sessions.Complete(id, request with { RequestId = null, MaxTokens = 2 })) another.Add(chunk);
        Assert.Equal(2 * "only once".Length + 8, another[0].Position);
    }

    [Fact]
    public async Task Chat_turns_after_what_the_session_holds_are_rendered_by_the_session()
    {
        var id = NewId();
        var spec = Spec(seed: 2);
        await foreach (var _ in fixture.Sessions.Complete(id, new(spec, PromptInput.FromTurns(new ChatTurn("user", "hi")), 3))) { }
        string afterFirst = (await fixture.Sessions.Session(id).GetText())!;
        Assert.StartsWith("User: hi\nAssistant:", afterFirst);

        var chunks = new List<CompletionChunk>();
        await foreach (var chunk in fixture.Sessions.Complete(id, new(spec, PromptInput.FromTurns(new ChatTurn("user", "again")), 3))) chunks.Add(chunk);
        string expected = afterFirst + ChatTemplate.After(afterFirst, [new ChatTurn("user", "again")]);
        string afterSecond = (await fixture.Sessions.Session(id).GetText())!;
        Assert.StartsWith(expected, afterSecond);
        Assert.Contains("User: again\nAssistant:", afterSecond);
        Assert.Equal(expected.Length, chunks[0].Position);   // the byte tokenizer: one token per byte
        Assert.Equal(afterFirst.Length, chunks[0].Prompt!.CachedTokens);
    }
}
