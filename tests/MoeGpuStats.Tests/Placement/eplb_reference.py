# A line-by-line transliteration of DeepSeek's eplb.py (https://github.com/deepseek-ai/EPLB, commit
# d52c72d) with lists for tensors, float32 emulated and a stable sort, to cross-check the C# port:
#
#   python3 tests/MoeGpuStats.Tests/Placement/eplb_reference.py path/to/moegs CASES SEED
#
# runs `moegs plan --json` on random loads (ties, skew, large counts) and compares phy2log and logcnt.
# Plain Python (no torch, no NumPy), so it runs wherever the CLI does.
#
# eplb.py: MIT License, Copyright (c) 2025 DeepSeek
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
# to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
# copies of the Software, and to permit persons to whom the Software is
# furnished to do so, subject to the following conditions:
#
# The above copyright notice and this permission notice shall be included in all
# copies or substantial portions of the Software.
#
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
# IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
# FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
# AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
# LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
# OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
# SOFTWARE.
import json, os, random, shutil, struct, subprocess, sys, tempfile
def f32(x): return struct.unpack('f', struct.pack('f', x))[0]

def balanced_packing(weight, num_packs):
    L, n = len(weight), len(weight[0])
    assert n % num_packs == 0
    gpp = n // num_packs
    if gpp == 1:
        return [list(range(n)) for _ in range(L)], [[0]*n for _ in range(L)]
    pack_index = [[-1]*n for _ in range(L)]; rank_in_pack = [[-1]*n for _ in range(L)]
    for i in range(L):
        indices = sorted(range(n), key=lambda j: -weight[i][j])
        pw = [0.0]*num_packs; pi = [0]*num_packs
        for group in indices:
            pack = min((p for p in range(num_packs) if pi[p] < gpp), key=pw.__getitem__)
            pack_index[i][group] = pack; rank_in_pack[i][group] = pi[pack]
            pw[pack] = f32(pw[pack] + weight[i][group]); pi[pack] += 1
    return pack_index, rank_in_pack

def replicate_experts(weight, num_phy):
    n, num_log = len(weight), len(weight[0])
    phy2log = [list(range(num_phy)) for _ in range(n)]; rank = [[0]*num_phy for _ in range(n)]; logcnt = [[1]*num_log for _ in range(n)]
    for i in range(num_log, num_phy):
        for r in range(n):
            q = [f32(weight[r][j] / logcnt[r][j]) for j in range(num_log)]
            idx = q.index(max(q))
            phy2log[r][i] = idx; rank[r][i] = logcnt[r][idx]; logcnt[r][idx] += 1
    return phy2log, rank, logcnt

def inverse(perm):
    out = []
    for row in perm:
        inv = [0]*len(row)
        for i, p in enumerate(row): inv[p] = i
        out.append(inv)
    return out

def hierarchical(weight, R, G, N, P):
    L, E = len(weight), len(weight[0])
    gs = E // G; gpn = G // N; ppg = R // P
    tpg = []
    for l in range(L):
        row = []
        for g in range(G):
            s = 0.0
            for k in range(gs): s = f32(s + weight[l][g*gs+k])
            row.append(s)
        tpg.append(row)
    gpi, gri = balanced_packing(tpg, N)
    log2mlog = [[(gpi[l][g]*gpn + gri[l][g])*gs + k for g in range(G) for k in range(gs)] for l in range(L)]
    mlog2log = inverse(log2mlog)
    flat = [[weight[l][mlog2log[l][j]] for j in range(E)] for l in range(L)]
    tpm = [flat[l][n*(E//N):(n+1)*(E//N)] for l in range(L) for n in range(N)]
    phy2mlog, phyrank, mlogcnt = replicate_experts(tpm, R // N)
    tpp = [[f32(tpm[r][phy2mlog[r][j]] / mlogcnt[r][phy2mlog[r][j]]) for j in range(R//N)] for r in range(L*N)]
    pack, rip = balanced_packing(tpp, P // N)
    phy2pphy = [[pack[r][j]*ppg + rip[r][j] for j in range(R//N)] for r in range(L*N)]
    pphy2phy = inverse(phy2pphy)
    pphy2mlog = [[phy2mlog[r][pphy2phy[r][k]] for k in range(R//N)] for r in range(L*N)]
    pphy2log = []; logcnt = []
    for l in range(L):
        m = [x + n*(E//N) for n in range(N) for x in pphy2mlog[l*N+n]]
        pphy2log.append([mlog2log[l][x] for x in m])
        cnt = [c for n in range(N) for c in mlogcnt[l*N+n]]
        logcnt.append([cnt[log2mlog[l][j]] for j in range(E)])
    return pphy2log, logcnt

def rebalance(weight, R, G, N, P):
    weight = [[f32(float(x)) for x in row] for row in weight]
    return hierarchical(weight, R, G, N, P) if G % N == 0 else hierarchical(weight, R, 1, 1, P)

if __name__ == '__main__':
    moegs = sys.argv[1]; cases = int(sys.argv[2]); rnd = random.Random(int(sys.argv[3]))
    shapes = [(12,16,4,2,8),(64,80,8,4,16),(32,48,8,2,8),(60,72,6,4,8),(16,64,2,2,2),(9,12,3,1,3),(8,24,4,4,8),(24,32,6,2,4),(40,60,10,5,10)]
    bad = 0
    path = os.path.join(tempfile.mkdtemp(prefix='eplb-ref-'), 'loads.json')
    for c in range(cases):
        E, R, G, N, P = rnd.choice(shapes)
        kind = rnd.randrange(4)
        w = [[(rnd.randrange(0, 4) if kind == 0 else rnd.randrange(0, 1000) if kind == 1 else int(rnd.paretovariate(1.2)*100) if kind == 2 else rnd.randrange(0, 1 << 30)) for _ in range(E)] for _ in range(3)]
        with open(path, 'w') as f:
            json.dump(w, f)
        out = json.loads(subprocess.run([moegs, 'plan', path, '--replicas', str(R), '--groups', str(G), '--nodes', str(N), '--gpus', str(P), '--json'], capture_output=True, text=True, check=True).stdout)
        p2l, cnt = rebalance(w, R, G, N, P)
        if out['physical_to_logical'] != p2l or out['replica_counts'] != cnt:
            bad += 1; print('MISMATCH', E, R, G, N, P, kind, w, p2l, out['physical_to_logical'])
    shutil.rmtree(os.path.dirname(path))
    print(f'{cases} cases, {bad} mismatches')
    sys.exit(1 if bad else 0)
