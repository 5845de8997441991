// Runs the grammars the schema tests dump through llama.cpp's own grammar
// parser and matcher (no model needed: the internal API takes a null vocab).
// Each <base>.gbnf must parse; every string in <base>.samples must be
// accepted to completion and every string in <base>.rejects refused.
//
//   TROUPE_GBNF_DUMP=/tmp/gbnf cargo test -p troupe-inference --test schema_convert --test schema_property
//   L=~/.cargo/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp
//   B=target/debug/build/llama-cpp-sys-2-*/out/lib
//   g++ -std=c++17 -I$L/include -I$L/src -I$L/ggml/include llama_check.cpp \
//       $B/libllama.a $B/libggml.a $B/libggml-cpu.a $B/libggml-base.a -fopenmp -lpthread -o llama_check
//   ./llama_check $(ls /tmp/gbnf/*.gbnf | sed 's/.gbnf$//')
#include "llama-grammar.h"
#include <fstream>
#include <sstream>
#include <iostream>
#include <string>
#include <vector>
#include <algorithm>
static std::string slurp(const std::string &p){std::ifstream f(p, std::ios::binary); std::stringstream s; s<<f.rdbuf(); return s.str();}
int main(int argc, char**argv){
  int bad=0, total=0;
  for(int i=1;i<argc;i++){
    std::string base=argv[i];
    std::string g=slurp(base+".gbnf");
    auto *gr = llama_grammar_init_impl(nullptr, g.c_str(), "root", false, nullptr,0,nullptr,0);
    if(!gr){std::cout<<"PARSE FAIL "<<base<<"\n"; bad++; continue;}
    for (std::string kind : {"samples", "rejects"}) {
      std::string s=slurp(base+"."+kind); size_t pos=0;
      while(pos<s.size()){ size_t e=s.find('\0',pos); if(e==std::string::npos) e=s.size(); std::string one=s.substr(pos,e-pos); pos=e+1;
        auto *c=llama_grammar_clone_impl(*gr); bool ok=true;
        try{ llama_grammar_accept_str(*c, one); } catch(const std::exception &ex){ ok=false; }
        if(ok){ const auto &st=c->stacks; ok = std::any_of(st.begin(), st.end(), [](const llama_grammar_stack &x){return x.empty();}); }
        llama_grammar_free_impl(c); total++;
        bool want = kind=="samples";
        if(ok!=want){bad++; std::cout<<"MISMATCH("<<kind<<") "<<base<<": "<<one<<"\n";}
      }
    }
    llama_grammar_free_impl(gr);
  }
  std::cout<<"checked "<<total<<" strings, "<<bad<<" problems\n"; return bad!=0;
}
